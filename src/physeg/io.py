"""Reading and writing images, label masks and volumes, safely.

Formats
-------
``.png``, ``.jpg``/``.jpeg`` and ``.bmp`` go through ``imageio.v3`` with the Pillow plugin
(named explicitly, so a corrupt file never falls through to some other backend);
``.tif``/``.tiff`` go through ``tifffile``. The file's suffix chooses the library; Pillow then
recognises the actual format from the contents, so a PNG misnamed ``.jpg`` still reads
(losslessly), while a file Pillow cannot decode is reported as corrupt.

Arrays come back exactly as stored, never rescaled (design: "no silent rescaling"):

* 2D grey ``(rows, cols)``; colour ``(rows, cols, C)`` with ``C`` = 3 (RGB) or 4 (RGBA);
* 16-bit grey PNG stays ``uint16``;
* a multi-page TIFF (or a TIFF written as a 3D array) is a volume ``(planes, rows, cols[, C])``.

Safety rules for every write (the CLI relies on them)
------------------------------------------------------
* Atomic: the file is encoded in memory, written to a hidden temporary file in the target
  folder (``.<name>.<random>.physeg-tmp``), flushed with ``fsync`` and moved into place with
  ``os.replace`` (or ``os.link`` when overwriting is not allowed, so that a file created
  meanwhile by someone else is not clobbered). A failed write leaves no temporary file behind
  and leaves an existing output untouched; one left by a killed process is removed by
  :func:`remove_stale_temps`. Every physeg file (labels, overlays, reports, models) is
  written by this one writer.
* Parent folders are created.
* An existing output is only replaced with ``overwrite=True`` (``FileExistsError`` otherwise).
* An input is never overwritten: ``protect`` lists the input paths; writing to any of them
  (same resolved path, or the same file through a link) raises :class:`ProtectedPathError`
  even with ``overwrite=True``.

Choices made where the brief left room
--------------------------------------
* Label images: ``.png`` (2D, uint8 when the largest label is <= 255, else uint16, up to
  65535) or ``.tif``/``.tiff`` (2D or 3D; the smallest of uint8/uint16/uint32, zlib
  compressed). JPEG is refused because it is lossy; BMP is refused because Pillow's 8-bit
  BMP is palette based and 16-bit BMP is not portable, so labels could come back changed.
* ``read_mask`` accepts a colour mask only when all colour channels are equal (grey stored as
  RGB); an alpha channel is accepted only if it is constant, and is then dropped. Palette
  ("P" mode) PNG masks are read as their palette *indices*, which is how VOC-style label PNGs
  store labels. Integer-valued float masks (e.g. float32 TIFF) are converted to the smallest
  unsigned dtype; any fractional value is an error.
* Provenance: ``write_labels(..., provenance=dict)`` stores the dict as JSON in the PNG
  ``tEXt`` chunk / TIFF ``ImageDescription`` under the key ``physeg``; it is written with the
  pixels, so a label file and its provenance appear together or not at all
  (:func:`read_provenance`).
* 16-bit colour PNGs are refused on read and write with a hint to use TIFF: Pillow reduces
  them to 8 bits, which would silently change the data.
* ``is_image_file`` looks at the suffix only and skips hidden names (``.x.png``, including the
  temporary files of this module and macOS ``._`` files).
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import os
import secrets
from pathlib import Path
from typing import Any, Collection

import numpy as np

__all__ = [
    "SUPPORTED_SUFFIXES",
    "LABEL_SUFFIXES",
    "TEMP_SUFFIX",
    "ProtectedPathError",
    "is_image_file",
    "read_image",
    "read_mask",
    "write_labels",
    "write_image",
    "atomic_write_bytes",
    "check_writable",
    "same_file",
    "remove_stale_temps",
    "read_provenance",
    "file_sha256",
    "output_path_for",
]

#: Image file suffixes physeg reads (lower case, with the dot).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Suffixes :func:`write_labels` accepts (lossless, integer-preserving).
LABEL_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
#: Ending of the hidden temporary files of the atomic writer.
TEMP_SUFFIX = ".physeg-tmp"

_TIFF = (".tif", ".tiff")
_FORMAT_NAME = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_PILLOW_EXT = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".bmp": ".bmp"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_O_BINARY = getattr(os, "O_BINARY", 0)
_PROVENANCE_KEY = "physeg"

PathLike = str | os.PathLike


class ProtectedPathError(PermissionError):
    """Raised when a write would replace one of the protected input files."""


# --------------------------------------------------------------------------- helpers


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _supported_text() -> str:
    return ", ".join(SUPPORTED_SUFFIXES)


def is_image_file(path: PathLike) -> bool:
    """Return whether ``path`` has a supported image suffix (case-insensitive).

    Only the name is examined (the file need not exist). Hidden names starting with ``.``
    are not images (temporary files, macOS ``._`` resource files).
    """
    p = Path(path)
    return _suffix(p) in SUPPORTED_SUFFIXES and not p.name.startswith(".")


def _check_readable(path: PathLike) -> Path:
    """Common checks before decoding: existence, not a folder, suffix, not empty."""
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path (str or pathlib.Path), got {type(path).__name__}.")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image file not found: {p}")
    if p.is_dir():
        raise IsADirectoryError(
            f"{p} is a directory, expected an image file; pass the folder's files (or the "
            "folder itself to the CLI / physeg.data.datasets.find_images)."
        )
    suffix = _suffix(p)
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"unsupported file type {p.suffix or '(no suffix)'!r} for {p}; supported suffixes: "
            f"{_supported_text()}."
        )
    if p.stat().st_size == 0:
        raise ValueError(f"could not read {p}: the file is empty (0 bytes).")
    return p


def _corrupt(p: Path, err: BaseException | None = None) -> ValueError:
    fmt = _FORMAT_NAME[_suffix(p)]
    detail = f" ({type(err).__name__}: {err})" if err is not None else ""
    return ValueError(
        f"could not read {p}: the file is corrupt or not a {fmt} file{detail}. "
        "Re-export it, or check that its suffix matches its format."
    )


def _png_ihdr(p: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG, or None when the header is not a PNG header."""
    with open(p, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _read_pillow(p: Path, *, palette_indices: bool = False) -> np.ndarray:
    import imageio.v3 as iio

    suffix = _suffix(p)
    if suffix == ".png":
        ihdr = _png_ihdr(p)
        if ihdr is None:
            raise _corrupt(p)
        depth, ctype = ihdr
        if depth == 16 and ctype in (2, 4, 6):
            raise ValueError(
                f"cannot read {p} exactly: it is a 16-bit colour (or grey+alpha) PNG and the "
                "PNG reader (Pillow) would reduce it to 8 bits. Convert it to a 16-bit TIFF "
                "(e.g. tifffile.imwrite('x.tif', array)) and read that instead."
            )
    try:
        kwargs: dict[str, Any] = {}
        if palette_indices and suffix == ".png":
            meta = iio.immeta(p, plugin="pillow", exclude_applied=False)
            if meta.get("mode") == "P":
                kwargs["mode"] = "P"
        arr = iio.imread(p, plugin="pillow", **kwargs)
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as err:
        raise _corrupt(p, err) from None
    return np.asarray(arr)


def _tiff_info(p: Path) -> tuple[tuple[int, ...], bool]:
    """(spatial shape, has_channels) of a TIFF as :func:`_read_tiff` returns it, no decoding."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series
            shape = tuple(int(s) for s in series[0].shape)
            axes = series[0].axes
            same = {(tuple(s.shape), str(s.dtype)) for s in series}
            if len(series) > 1 and len(same) == 1:
                shape = (len(series),) + shape
    except Exception as err:  # tifffile raises many types for bad files
        raise _corrupt(p, err) from None
    has_channels = axes.endswith("S") or (axes.endswith("C") and shape[-1] in (3, 4))
    if has_channels:
        shape = shape[:-1]
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape, has_channels


def _read_tiff(p: Path) -> tuple[np.ndarray, bool]:
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series
            axes = series[0].axes
            same = {(tuple(s.shape), str(s.dtype)) for s in series}
            if len(series) > 1 and len(same) == 1:
                # Several single-image series of one size (pages written one by one): a volume.
                arr = np.stack([s.asarray() for s in series])
                axes = "Q" + axes
            else:
                arr = series[0].asarray()
    except Exception as err:  # tifffile raises many types for bad files
        raise _corrupt(p, err) from None
    arr = np.asarray(arr)
    has_channels = axes.endswith("S") or (axes.endswith("C") and arr.shape[-1] in (3, 4))
    # Drop singleton leading axes tifffile may add (e.g. 'Q' of size 1); keep (rows, cols[, C]).
    while arr.ndim > 2 + has_channels and arr.shape[0] == 1:
        arr = arr[0]
    return arr, has_channels


def _read_any(path: PathLike, *, palette_indices: bool = False) -> tuple[np.ndarray, bool, Path]:
    p = _check_readable(path)
    if _suffix(p) in _TIFF:
        arr, has_channels = _read_tiff(p)
    else:
        arr = _read_pillow(p, palette_indices=palette_indices)
        has_channels = arr.ndim == 3
    if arr.ndim < 2 or arr.size == 0:
        raise ValueError(f"could not read {p}: it holds no 2D image (shape {arr.shape}).")
    return arr, has_channels, p


# --------------------------------------------------------------------------- reading


def read_image(path: PathLike) -> np.ndarray:
    """Read an image or a volume exactly as stored (no rescaling, no colour conversion).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.tif`` or ``.tiff`` file.

    Returns
    -------
    numpy.ndarray
        The stored dtype (``uint8``, ``uint16``, ``float32``, ``bool`` for 1-bit images, ...)
        and shape: ``(rows, cols)`` grey, ``(rows, cols, C)`` colour, or
        ``(planes, rows, cols[, C])`` for a multi-page TIFF volume.

    Raises
    ------
    FileNotFoundError
        The file does not exist (the message names the path).
    IsADirectoryError
        ``path`` is a folder.
    ValueError
        Unsupported suffix (the supported ones are listed), an empty (0-byte) file, a corrupt
        file or one whose contents do not match its suffix, a 16-bit colour PNG.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from physeg.io import read_image, write_image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_image(d / "a.png", np.full((4, 5), 7, np.uint16))
    >>> img = read_image(d / "a.png")
    >>> img.shape, img.dtype.name, int(img[0, 0])
    ((4, 5), 'uint16', 7)
    """
    arr, _, _ = _read_any(path)
    return arr


def _smallest_uint(max_value: int) -> type[np.unsignedinteger]:
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dt).max:
            return dt
    return np.uint64


def read_mask(path: PathLike) -> np.ndarray:
    """Read an integer label image (2D or 3D), 0 = background.

    Parameters
    ----------
    path : str or os.PathLike
        A label PNG / TIFF (or BMP); JPEG masks are read too but are usually damaged by
        compression.

    Returns
    -------
    numpy.ndarray
        Non-negative integer labels of shape ``(rows, cols)`` or ``(planes, rows, cols)``.
        Unsigned stored dtypes are kept (uint8 stays uint8); ``bool`` becomes ``uint8``;
        signed and integer-valued float data become the smallest unsigned dtype that holds
        them. Palette PNGs give their palette indices.

    Raises
    ------
    ValueError
        A colour mask whose channels differ, a non-constant alpha channel, fractional or
        non-finite float values, negative labels; plus every error of :func:`read_image`.
    """
    arr, has_channels, p = _read_any(path, palette_indices=True)
    if has_channels:
        n_ch = arr.shape[-1]
        if n_ch in (2, 4):  # grey+alpha or RGBA: the alpha channel must be constant
            alpha = arr[..., -1]
            if alpha.size and np.any(alpha != alpha.flat[0]):
                raise ValueError(
                    f"mask {p} has a varying alpha (transparency) channel; a label mask must be "
                    "a single-channel integer image. Save it without transparency (grey PNG)."
                )
            arr = arr[..., :-1]
        if arr.shape[-1] > 1 and np.any(arr != arr[..., :1]):
            raise ValueError(
                f"mask {p} is a colour image with different channels (shape {arr.shape}); a "
                "label mask must be single-channel with integer labels (0 = background). "
                "Convert colours to label ids first (one integer per region)."
            )
        arr = arr[..., 0]
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            raise ValueError(
                f"mask {p} contains {int(arr.size - np.count_nonzero(finite))} NaN/infinite "
                "values; a label mask must hold non-negative integers."
            )
        if np.any(arr != np.round(arr)):
            raise ValueError(
                f"mask {p} holds non-integer float values (dtype {arr.dtype}, e.g. "
                f"{arr[arr != np.round(arr)].flat[0]!r}); a label mask must hold integer "
                "labels. If it is a probability map, threshold it first."
            )
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"mask {p} has dtype {arr.dtype}; expected integer labels.")
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return arr
    lo = arr.min() if arr.size else 0
    if lo < 0:
        raise ValueError(f"mask {p} has negative labels (min {lo}); labels must be >= 0.")
    hi = int(arr.max()) if arr.size else 0
    return arr.astype(_smallest_uint(hi))


# --------------------------------------------------------------------------- writing


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (same resolved path, or same inode)."""
    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
    except OSError:
        pass
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: PathLike, *, overwrite: bool, protect: Collection[PathLike]) -> Path:
    """Check, before any work, that ``path`` may be written; return it as a Path.

    Raises :class:`ProtectedPathError` when ``path`` is one of ``protect`` (even with
    ``overwrite``), ``IsADirectoryError`` for a folder, ``FileExistsError`` when it exists and
    ``overwrite`` is False. The writers call this again at write time.
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
    if p.exists() and not overwrite:
        raise FileExistsError(
            f"output {p} already exists; use --overwrite / overwrite=True to replace it."
        )
    return p


def _open_temp(folder: Path, name: str) -> tuple[int, Path]:
    """Create a new hidden temporary file next to the target (mode 0o666 minus the umask)."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder}.")


def _atomic_write(p: Path, data: bytes, *, overwrite: bool) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(p.parent, p.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)  # fails if p appeared meanwhile: never clobber
            except FileExistsError:
                raise FileExistsError(
                    f"output {p} already exists; use --overwrite / overwrite=True to replace it."
                ) from None
            except OSError:  # file system without hard links
                if p.exists():
                    raise FileExistsError(
                        f"output {p} already exists; use --overwrite / overwrite=True to "
                        "replace it."
                    ) from None
                os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(p.parent)
    return p


def remove_stale_temps(folder: PathLike) -> None:
    """Delete temporary files a killed writer left in ``folder`` (never a finished file)."""
    for stale in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


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
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}.")
    p = check_writable(path, overwrite=overwrite, protect=protect)
    return _atomic_write(p, bytes(data), overwrite=overwrite)


def _encode(p: Path, arr: np.ndarray, *, tiff_kwargs: dict[str, Any] | None = None,
            png_text: dict[str, str] | None = None) -> bytes:
    suffix = _suffix(p)
    if suffix in _TIFF:
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
    return bytes(iio.imwrite("<bytes>", arr, plugin="pillow", extension=_PILLOW_EXT[suffix],
                             **kwargs))


def _check_write_suffix(p: Path, allowed: tuple[str, ...], what: str) -> str:
    suffix = _suffix(p)
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
    suffix = _suffix(p)
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
    out = lab.astype(_smallest_uint(hi))  # always a new array: caller's data untouched
    target = check_writable(p, overwrite=overwrite, protect=protect)
    tiff_kwargs = {"photometric": "minisblack"} if suffix in _TIFF else None
    png_text = None
    if provenance is not None:
        text = json.dumps(provenance, sort_keys=True)
        if tiff_kwargs is not None:
            # metadata=None: tifffile writes no description of its own, ours is the first.
            tiff_kwargs.update(description=f"{_PROVENANCE_KEY}:{text}", metadata=None)
        else:
            png_text = {_PROVENANCE_KEY: text}
    data = _encode(target, out, tiff_kwargs=tiff_kwargs, png_text=png_text)
    return _atomic_write(target, data, overwrite=overwrite)


def read_provenance(path: PathLike) -> dict[str, Any] | None:
    """Return the provenance stored by :func:`write_labels`, or None (absent or unreadable)."""
    p = Path(path)
    try:
        if _suffix(p) == ".png":
            from PIL import Image

            with Image.open(p) as im:
                text = getattr(im, "text", {}).get(_PROVENANCE_KEY)
            return None if text is None else json.loads(text)
        if _suffix(p) in _TIFF:
            import tifffile

            with tifffile.TiffFile(p) as tf:
                desc = tf.pages[0].description
            prefix = f"{_PROVENANCE_KEY}:"
            return json.loads(desc[len(prefix):]) if desc.startswith(prefix) else None
    except Exception:  # noqa: BLE001 - a damaged file simply has no provenance
        return None
    return None


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


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
    if suffix in _TIFF:
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
        fmt = _FORMAT_NAME[suffix]
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


# --------------------------------------------------------------------------- naming


def _is_volume_tiff(p: Path) -> bool:
    return len(_tiff_info(p)[0]) >= 3


def output_path_for(
    input_path: PathLike, out_dir: PathLike, suffix: str = ".png"
) -> Path:
    """Label-file path named after an input: ``img.jpg`` -> ``out_dir/img.png``.

    Parameters
    ----------
    input_path : str or os.PathLike
        The input image.
    out_dir : str or os.PathLike
        Output folder (not created here).
    suffix : str, default ".png"
        Suffix for 2D results (``.png``, ``.tif`` or ``.tiff``). A TIFF input that holds a
        volume (several planes) always gets ``.tif``, since PNG cannot hold 3D labels.

    Returns
    -------
    pathlib.Path
        ``Path(out_dir) / (stem + suffix)``.
    """
    if not suffix.startswith("."):
        suffix = "." + suffix
    if suffix.lower() not in LABEL_SUFFIXES:
        raise ValueError(
            f"label outputs must be {', '.join(LABEL_SUFFIXES)}; got suffix {suffix!r}."
        )
    src = Path(input_path)
    if _suffix(src) in _TIFF and suffix.lower() == ".png" and src.is_file():
        if _is_volume_tiff(src):
            suffix = ".tif"
    return Path(out_dir) / (src.stem + suffix)


# Exposed for physeg.data.datasets (shape checks without decoding pixels).
def _spatial_shape(path: PathLike) -> tuple[int, ...]:
    """Spatial shape of an image file (channels dropped), read from its header when possible."""
    p = _check_readable(path)
    if _suffix(p) in _TIFF:
        return _tiff_info(p)[0]
    import imageio.v3 as iio

    try:
        props = iio.improps(p, plugin="pillow")
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as err:
        raise _corrupt(p, err) from None
    return tuple(int(s) for s in props.shape[:2])

