"""What the readers and the writer share: suffixes, formats, the size limit, the errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

#: Image file suffixes physeg reads (lower case, with the dot).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Suffixes :func:`write_labels` accepts (lossless, integer-preserving).
LABEL_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
#: Ending of the hidden temporary files of the atomic writer.
TEMP_SUFFIX = ".physeg-tmp"
#: Largest image (pixels, or voxels of a volume; channels not counted) read by default:
#: 100 million, e.g. 10000 x 10000 or 400 planes of 500 x 500. Raise it with ``max_pixels=``
#: (``--max-pixels``); larger images belong to :mod:`physeg.families.heat.blockwise`.
DEFAULT_MAX_PIXELS = 100_000_000

TIFF = (".tif", ".tiff")
FORMAT_NAME = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
PILLOW_EXT = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".bmp": ".bmp"}
O_BINARY = getattr(os, "O_BINARY", 0)
PROVENANCE_KEY = "physeg"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}

PathLike = str | os.PathLike


class ProtectedPathError(PermissionError):
    """Raised when a write would replace one of the protected input files."""


class OutputError(OSError):
    """An output cannot be written (permissions, read-only, not a folder, a link loop, ...).

    The message is one line: which path, why, and how to fix it; ``errno`` is kept.
    """


class DiskFullError(OutputError):
    """No space left on the device (``ENOSPC`` / ``EDQUOT``); nothing partial was left."""


class ImageTooLargeError(ValueError):
    """An image declares more pixels than the ``max_pixels`` limit (checked before decoding)."""


def suffix_of(path: Path) -> str:
    return path.suffix.lower()


def resolve(path: PathLike) -> Path:
    """``Path.resolve()`` that never raises: a link loop or an unreadable folder gives the
    absolute path as written."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: symlink loop (Python < 3.13)
        return Path(os.path.abspath(path))


def smallest_uint(max_value: int) -> type[np.unsignedinteger]:
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dt).max:
            return dt
    return np.uint64


_HINTS = {
    errno.EACCES: "permission denied; fix the folder's permissions or choose another location",
    errno.EPERM: "operation not permitted; choose another location",
    errno.EROFS: "the file system is read-only; choose another location",
    errno.ELOOP: "a symbolic link loops back on itself; remove the link or choose another name",
    errno.EISDIR: "it is a folder; name a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter one",
    errno.ENOSPC: "no space left on the device; free some space",
}


def output_error(err: OSError, path: PathLike, what: str = "") -> OutputError:
    """A one-line :class:`OutputError` (or :class:`DiskFullError`) for an OS failure."""
    code = err.errno
    reason = _HINTS.get(code) or (err.strerror or str(err)).rstrip(".")
    if code in _DISK_FULL:
        reason = _HINTS[errno.ENOSPC]
    cls = DiskFullError if code in _DISK_FULL else OutputError
    out = cls(f"cannot write {what + ' ' if what else ''}{path}: {reason}.")
    out.errno = code
    return out


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and (isinstance(err, DiskFullError) or err.errno in _DISK_FULL)
