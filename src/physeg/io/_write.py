"""The one writer: atomic, no-clobber, never over an input; and the append-only log.

Every file physeg writes (labels, overlays, models, reports, logs) goes through this module:

* :func:`check_writable` is the one protected-path check (never an input, never an existing
  file without ``overwrite``, never into a folder or through a broken link); the writers run
  it again at write time.
* :func:`_atomic_write`: hidden temporary file in the target folder, ``fsync``, then the
  *commit*: ``os.replace`` when overwriting is allowed, otherwise ``os.link`` (or, where the
  file system has no hard links, an ``O_EXCL`` claim of the name), which fails when the
  output appeared meanwhile, so a concurrent run's file is reported, never replaced.
* Temporary files are named ``.<name>.<host>-<pid>-<random>.physeg-tmp``:
  :func:`remove_stale_temps` deletes only those whose writer, on this host, has exited.
* OS failures become one-line :class:`OutputError` / :class:`DiskFullError` messages.
"""

from __future__ import annotations

import errno
import hashlib
import io as _io
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any, Collection

import numpy as np

from ._common import (
    FORMAT_NAME,
    LABEL_SUFFIXES,
    O_BINARY,
    PILLOW_EXT,
    PROVENANCE_KEY,
    SUPPORTED_SUFFIXES,
    TEMP_SUFFIX,
    TIFF,
    OutputError,
    PathLike,
    ProtectedPathError,
    output_error,
    resolve,
    smallest_uint,
    suffix_of,
)

_TEMP_NAME = re.compile(
    r"^\..*\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{12}" + re.escape(TEMP_SUFFIX) + "$"
)


# --------------------------------------------------------------------------- the check


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (same resolved path, or same inode)."""
    a, b = Path(a), Path(b)
    if resolve(a) == resolve(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _is_broken_link(p: Path) -> bool:
    return os.path.lexists(p) and not p.exists()  # dangling, or a link loop


def check_writable(path: PathLike, *, overwrite: bool, protect: Collection[PathLike]) -> Path:
    """Check, before any work, that ``path`` may be written; return it as a Path.

    Raises :class:`ProtectedPathError` when ``path`` is one of ``protect`` (even with
    ``overwrite``), ``IsADirectoryError`` for a folder, ``FileExistsError`` when it exists
    (or is a broken symbolic link / a link loop) and ``overwrite`` is False. The writers call
    this again at write time, and their commit is no-clobber besides.
    """
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"expected an output path (str or pathlib.Path), got {type(path).__name__}."
        )
    p = Path(path)
    if isinstance(protect, (str, os.PathLike)):
        protect = [protect]
    for q in protect:
        if same_file(p, q):
            raise ProtectedPathError(
                f"refusing to write {p}: it is one of the input files ({q}); physeg never "
                "writes over an input, even with overwrite. Choose another output folder or name."
            )
    if p.is_dir():
        raise IsADirectoryError(f"cannot write {p}: a directory with that name exists.")
    if not overwrite:
        if _is_broken_link(p):
            raise FileExistsError(
                f"output {p} is a broken symbolic link or a link loop; remove it, or use "
                "--overwrite / overwrite=True to replace the link."
            )
        if p.exists():
            raise FileExistsError(
                f"output {p} already exists; use --overwrite / overwrite=True to replace it."
            )
    return p


class InputSet:
    """The inputs of a run, indexed once by resolved path and by (device, inode), so that
    :meth:`hits` tells cheaply which of them an output path would write over."""

    def __init__(self, paths: Collection[PathLike]):
        self._by_path: dict[Path, str] = {}
        self._by_inode: dict[tuple[int, int], str] = {}
        for f in paths:
            self._by_path[resolve(f)] = str(f)
            try:
                st = os.stat(f)
            except OSError:
                continue
            self._by_inode[(st.st_dev, st.st_ino)] = str(f)

    def hits(self, target: PathLike) -> list[str]:
        """The inputs ``target`` names (same resolved path, or the same file by a link)."""
        out = []
        key = resolve(target)
        if key in self._by_path:
            out.append(self._by_path[key])
        try:
            st = os.stat(target)
        except OSError:
            return out
        hit = self._by_inode.get((st.st_dev, st.st_ino))
        if hit is not None and hit not in out:
            out.append(hit)
        return out


# --------------------------------------------------------------------------- temporary files


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _open_temp(folder: Path, name: str) -> tuple[int, Path]:
    """Create a new hidden temporary file next to the target (mode 0o666 minus the umask),
    named after its writer (host and process) so that only a dead writer's files are swept."""
    tag = f"{_host_tag()}-{os.getpid()}"
    for _ in range(100):
        tmp = folder / f".{name[:120]}.{tag}-{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder}.")


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there; keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def remove_stale_temps(folder: PathLike) -> list[Path]:
    """Delete the temporary files of writers that no longer run; return what was deleted.

    Only files named by a process of this host that has exited are removed (a writer killed
    with ``kill -9``). The temporary files of a running writer (another batch writing the
    same folder), of another host (a shared folder) or in an unknown format are kept: they are
    hidden, and no reader lists them.
    """
    host = _host_tag()
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        m = _TEMP_NAME.match(tmp.name)
        if m and m["host"] == host and not _pid_alive(int(m["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def prepare_folder(folder: PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` (and its parents) and check that files can be created in it.

    Raises :class:`OutputError` with one line (a file in the way, permission denied, a
    read-only file system, no space) before any work starts.
    """
    p = Path(folder)
    if p.exists() and not p.is_dir():
        err = OutputError(f"cannot use {what} {p}: it is a file, not a folder; name a folder "
                          "(it is created when missing).")
        err.errno = errno.ENOTDIR
        raise err
    try:
        _make_folder(p)
        fd, probe = _open_temp(p, "probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise output_error(err, p, f"into {what}") from None
    return p


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file (or a broken link) stands where a folder should be
        code = errno.ELOOP if _is_broken_link(folder) else errno.ENOTDIR
        raise OSError(code, os.strerror(code)) from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - a 0-byte write on a full device
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


# --------------------------------------------------------------------------- the commit


def _appeared(p: Path) -> FileExistsError:
    return FileExistsError(
        f"output {p} appeared meanwhile (another physeg run writing the same folder?); it was "
        "not replaced. Use --overwrite / overwrite=True to replace it."
    )


def _commit(tmp: Path, p: Path, *, overwrite: bool) -> None:
    """Move the finished temporary file to ``p``: replace, or create without clobbering."""
    if overwrite:
        os.replace(tmp, p)
        return
    try:
        os.link(tmp, p)  # fails if p appeared meanwhile: never clobber
        return
    except FileExistsError:
        raise _appeared(p) from None
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENAMETOOLONG):
            raise
    # A file system without hard links (FAT, some network shares): claim the name first.
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, 0o666)
    except FileExistsError:
        raise _appeared(p) from None
    os.close(fd)
    os.replace(tmp, p)


def _atomic_write(p: Path, data: bytes, *, overwrite: bool) -> Path:
    try:
        _make_folder(p.parent)
        fd, tmp = _open_temp(p.parent, p.name)
    except OSError as err:
        raise output_error(err, p) from None
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, p, overwrite=overwrite)
    except (FileExistsError, ProtectedPathError):
        raise
    except OSError as err:
        raise output_error(err, p) from None
    finally:
        tmp.unlink(missing_ok=True)  # after os.link the temporary name is still there
    _fsync_dir(p.parent)
    return p


def atomic_write_bytes(
    path: PathLike,
    data: bytes,
    *,
    overwrite: bool = True,
    protect: Collection[PathLike] = (),
) -> Path:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; missing parent folders are created.
    data : bytes
        Full file content.
    overwrite : bool, default True
        Replace an existing file. ``False`` raises ``FileExistsError`` instead (also when the
        file appears while writing).
    protect : collection of paths, default ()
        Files that must never be written (inputs); raises :class:`ProtectedPathError`.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    OutputError, DiskFullError
        The folder cannot be written (one line: why and how to fix it); nothing is left.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}.")
    p = check_writable(path, overwrite=overwrite, protect=protect)
    return _atomic_write(p, bytes(data), overwrite=overwrite)


def _encode(p: Path, arr: np.ndarray, *, tiff_kwargs: dict[str, Any] | None = None,
            png_text: dict[str, str] | None = None) -> bytes:
    suffix = suffix_of(p)
    if suffix in TIFF:
        import tifffile

        buf = _io.BytesIO()
        kwargs: dict[str, Any] = {"compression": "zlib"}
        kwargs.update(tiff_kwargs or {})
        tifffile.imwrite(buf, arr, **kwargs)
        return buf.getvalue()
    import imageio.v3 as iio

    kwargs = {}
    if png_text:
        from PIL import PngImagePlugin

        kwargs["pnginfo"] = info = PngImagePlugin.PngInfo()
        for key, text in png_text.items():
            info.add_text(key, text)
    return bytes(iio.imwrite("<bytes>", arr, plugin="pillow", extension=PILLOW_EXT[suffix],
                             **kwargs))


def _check_write_suffix(p: Path, allowed: tuple[str, ...], what: str) -> str:
    suffix = suffix_of(p)
    if suffix not in allowed:
        raise ValueError(
            f"cannot write {what} to {p}: unsupported suffix {p.suffix or '(none)'!r}; "
            f"use one of {', '.join(allowed)}."
        )
    return suffix


def write_labels(
    path: PathLike,
    labels: Any,
    *,
    overwrite: bool = False,
    protect: Collection[PathLike] = (),
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write an integer label image losslessly (PNG or TIFF), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        ``.png`` for 2D labels up to 65535 (stored as uint8 when the largest label is <= 255,
        else uint16); ``.tif``/``.tiff`` for 2D or 3D labels up to 2**32 - 1 (smallest of
        uint8 / uint16 / uint32, zlib compressed). JPEG (lossy) and BMP are refused.
    labels : array_like
        Integer (or bool, or integer-valued float) labels >= 0, shape ``(rows, cols)`` or
        ``(planes, rows, cols)``. Not modified.
    overwrite : bool, default False
        Replace an existing output; otherwise ``FileExistsError``.
    protect : collection of paths, default ()
        Input files that must never be written, even with ``overwrite=True``.
    provenance : dict, optional
        JSON-able record stored in the file's metadata (:func:`read_provenance`).

    Returns
    -------
    pathlib.Path
        The written path; :func:`read_mask` gives the same labels back.

    Raises
    ------
    ValueError
        Wrong suffix (with the fix), 3D or > 65535 labels for a PNG (use ``.tif``), negative,
        fractional or non-finite labels, wrong number of dimensions.
    TypeError
        Non-numeric labels.
    FileExistsError, ProtectedPathError
        See ``overwrite`` and ``protect``.
    """
    p = Path(path)
    suffix = suffix_of(p)
    if suffix in (".jpg", ".jpeg"):
        raise ValueError(
            f"refusing to write labels to {p}: JPEG is lossy and would change the labels; "
            "use .png (2D, up to 65535 labels) or .tif (any)."
        )
    _check_write_suffix(p, LABEL_SUFFIXES, "labels")
    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    elif np.issubdtype(lab.dtype, np.floating):
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise ValueError(
                f"labels for {p} must be integers; got float values that are not whole "
                "numbers (or NaN/inf). Round or threshold them first."
            )
    elif not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels for {p} must be an integer array, got dtype {lab.dtype}.")
    if lab.ndim not in (2, 3):
        raise ValueError(
            f"labels for {p} must be 2D (rows, cols) or 3D (planes, rows, cols); got shape "
            f"{lab.shape}."
        )
    if lab.size == 0:
        raise ValueError(f"labels for {p} are empty (shape {lab.shape}).")
    lo = lab.min()
    if lo < 0:
        raise ValueError(f"labels for {p} must be >= 0 (0 = background); minimum is {lo}.")
    hi = int(lab.max())
    if suffix == ".png":
        if lab.ndim == 3:
            raise ValueError(
                f"cannot write 3D labels (shape {lab.shape}) to PNG {p}; PNG holds one 2D "
                f"image. Use a .tif suffix instead ({p.with_suffix('.tif').name})."
            )
        if hi > 65535:
            raise ValueError(
                f"labels for {p} go up to {hi}, more than 16-bit PNG holds (65535); use a "
                f".tif suffix instead ({p.with_suffix('.tif').name})."
            )
    if hi > np.iinfo(np.uint32).max:
        raise ValueError(f"labels for {p} go up to {hi}; at most 2**32 - 1 labels are supported.")
    out = lab.astype(smallest_uint(hi))  # always a new array: caller's data untouched
    target = check_writable(p, overwrite=overwrite, protect=protect)
    tiff_kwargs = {"photometric": "minisblack"} if suffix in TIFF else None
    png_text = None
    if provenance is not None:
        text = json.dumps(provenance, sort_keys=True)
        if tiff_kwargs is not None:
            # metadata=None: tifffile writes no description of its own, ours is the first.
            tiff_kwargs.update(description=f"{PROVENANCE_KEY}:{text}", metadata=None)
        else:
            png_text = {PROVENANCE_KEY: text}
    data = _encode(target, out, tiff_kwargs=tiff_kwargs, png_text=png_text)
    return _atomic_write(target, data, overwrite=overwrite)


def write_image(
    path: PathLike,
    image: Any,
    *,
    overwrite: bool = False,
    protect: Collection[PathLike] = (),
) -> Path:
    """Write an image (overlays, figures, test data) as stored, atomically; no rescaling.

    Parameters
    ----------
    path : str or os.PathLike
        ``.png``: 2D uint8/uint16, or uint8 RGB/RGBA. ``.jpg``/``.jpeg``: uint8 grey or RGB
        (lossy). ``.bmp``: uint8 grey or RGB. ``.tif``/``.tiff``: any numeric dtype, 2D,
        colour, or volumes ``(planes, rows, cols[, C])`` (zlib compressed).
    image : array_like
        The pixels; written exactly (no scaling, no dtype change). Not modified.
        ``bool`` images are written as uint8 0/1 to PNG/BMP/TIFF.
    overwrite : bool, default False
        Replace an existing output; otherwise ``FileExistsError``.
    protect : collection of paths, default ()
        Input files that must never be written, even with ``overwrite=True``.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    ValueError
        A dtype / shape the format cannot hold exactly; the message names the fix (usually
        "convert to uint8" or "use .tif").
    """
    p = Path(path)
    suffix = _check_write_suffix(p, SUPPORTED_SUFFIXES, "an image")
    img = np.asarray(image)
    if img.dtype == bool:
        img = img.astype(np.uint8)
    if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise TypeError(f"image for {p} must be numeric, got dtype {img.dtype}.")
    if img.size == 0:
        raise ValueError(f"image for {p} is empty (shape {img.shape}).")
    colour = img.ndim == 3 and img.shape[-1] in (3, 4)
    if suffix in TIFF:
        rgb = img.ndim in (3, 4) and img.shape[-1] in (3, 4)
        if not (img.ndim in (2, 3) or (img.ndim == 4 and rgb)):
            raise ValueError(
                f"image for {p} must be (rows, cols), (rows, cols, 3|4), (planes, rows, cols) or "
                f"(planes, rows, cols, 3|4); got shape {img.shape}."
            )
        kwargs: dict[str, Any] | None = {"photometric": "rgb" if rgb else "minisblack"}
        if rgb and img.shape[-1] == 4:
            kwargs["extrasamples"] = ("unassalpha",)
    else:
        fmt = FORMAT_NAME[suffix]
        if not (img.ndim == 2 or colour):
            raise ValueError(
                f"cannot write shape {img.shape} to {fmt} {p}: expected (rows, cols) grey or "
                "(rows, cols, 3|4) colour. Use a .tif suffix for volumes."
            )
        ok_dtype = img.dtype == np.uint8 or (
            suffix == ".png" and img.dtype == np.uint16 and img.ndim == 2
        )
        if not ok_dtype:
            allowed = "uint8 (or uint16 grey)" if suffix == ".png" else "uint8"
            raise ValueError(
                f"cannot write dtype {img.dtype} {'colour ' if img.ndim == 3 else ''}image to "
                f"{fmt} {p} exactly: {fmt} holds {allowed}. Convert it yourself (e.g. "
                "skimage.util.img_as_ubyte) or use a .tif suffix, which keeps any dtype."
            )
        if suffix in (".jpg", ".jpeg", ".bmp") and img.ndim == 3 and img.shape[-1] == 4:
            raise ValueError(
                f"cannot write an RGBA image to {fmt} {p}: the format has no alpha channel; use "
                ".png or drop the alpha channel (image[..., :3])."
            )
        kwargs = None
    target = check_writable(p, overwrite=overwrite, protect=protect)
    data = _encode(target, np.ascontiguousarray(img), tiff_kwargs=kwargs)
    return _atomic_write(target, data, overwrite=overwrite)

