"""The append-only JSON-lines log: one whole line per write, never torn, never an input."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Collection

from ._common import O_BINARY, SUPPORTED_SUFFIXES, PathLike, ProtectedPathError, output_error
from ._write import _is_broken_link, _make_folder, _write_all, same_file


def _is_log(p: Path) -> bool:
    """Whether ``p`` is empty or starts with a physeg JSON-lines record."""
    try:
        with open(p, "rb") as fh:
            first = fh.readline(1 << 16)
    except OSError:
        return False
    if not first.strip():
        return True
    try:
        rec = json.loads(first)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(rec, dict) and "event" in rec


def check_log(path: PathLike, *, overwrite: bool = False,
              protect: Collection[PathLike] = ()) -> tuple[Path, bool]:
    """The checks :class:`AppendLog` makes before opening ``path``, usable before any work.

    Returns ``(path, replace)``: ``replace`` is True for an existing file that is not a physeg
    log and ``overwrite`` allows replacing. Raises :class:`ProtectedPathError` (an input),
    ``IsADirectoryError``, ``ValueError`` (an image's name: ``.png``, ``.tif``, ..., even
    with ``overwrite``), ``FileExistsError`` (a broken link, or not a log without
    ``overwrite``).
    """
    p = Path(path)
    for q in [protect] if isinstance(protect, (str, os.PathLike)) else protect:
        if same_file(p, q):
            raise ProtectedPathError(
                f"refusing to write the log to {p}: it is one of the input files ({q}); "
                "physeg never writes over an input. Choose another --log file."
            )
    if p.is_dir():
        raise IsADirectoryError(
            f"cannot write the log to {p}: it is a folder; name a file (--log FILE)."
        )
    if p.suffix.lower() in SUPPORTED_SUFFIXES:  # surely an image: never replaced by a log
        raise ValueError(
            f"refusing to write the log to {p}: a {p.suffix} name is an image's; name the log "
            "file .jsonl (e.g. --log run.jsonl)."
        )
    if _is_broken_link(p):
        raise FileExistsError(
            f"log file {p} is a broken symbolic link or a link loop; remove it or choose "
            "another --log file."
        )
    if p.is_file() and not _is_log(p):
        if not overwrite:
            raise FileExistsError(
                f"log file {p} exists and is not a physeg log; choose another --log file, "
                "or use --overwrite to replace it."
            )
        return p, True
    return p, False


class AppendLog:
    """Append JSON records to a JSON-lines file, each as one whole line, fsynced at once.

    Parameters
    ----------
    path : str or os.PathLike
        The log file (its folder is created). An existing physeg log is appended to; any other
        existing file is refused (``FileExistsError``) unless ``overwrite``, which replaces it.
    overwrite : bool, default False
        Replace an existing file that is not a physeg log.
    protect : collection of paths, default ()
        Files the log must never be (inputs): :class:`ProtectedPathError`.

    Each line is written with one lock held (``fcntl.flock`` where available, so concurrent
    runs sharing a log never interleave); a write that fails part-way (disk full) is cut back
    to the line before, so the file never ends in a torn line, and raises
    :class:`DiskFullError` / :class:`OutputError`.
    """

    def __init__(self, path: PathLike, *, overwrite: bool = False,
                 protect: Collection[PathLike] = ()):
        p, truncate = check_log(path, overwrite=overwrite, protect=protect)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | O_BINARY | (os.O_TRUNC if truncate else 0)
        try:
            _make_folder(p.parent)
            self._fd: int | None = os.open(p, flags, 0o666)
        except OSError as err:
            raise output_error(err, p, "the log") from None
        self.path = p

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one JSON line (keys sorted); fsync."""
        if self._fd is None:
            raise ValueError(f"log {self.path} is closed.")
        data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        fd = self._fd
        _lock(fd, True)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, data)
                _fsync_file(fd)
            except OSError as err:
                try:
                    os.ftruncate(fd, start)  # never leave a torn line
                except OSError:
                    pass
                raise output_error(err, self.path, "the log") from None
        finally:
            _lock(fd, False)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _lock(fd: int, on: bool) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: appends are not locked
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if on else fcntl.LOCK_UN)
    except OSError:  # a file system without locks
        pass


def _fsync_file(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):  # not a regular file (/dev/null)
            raise


def read_log(path: PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines log; a torn last line (a writer killed mid-line) is ignored."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
