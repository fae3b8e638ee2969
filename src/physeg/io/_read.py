"""The readers: images and volumes exactly as stored, label masks, provenance, output names.

Every reader checks the size the file *declares* (PNG header, TIFF tags, Pillow's header
parse) against ``max_pixels`` before decoding anything, so an image too large for memory is
reported as such (:class:`ImageTooLargeError`), never as a corrupt file or a ``MemoryError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ._common import (
    DEFAULT_MAX_PIXELS,
    FORMAT_NAME,
    PROVENANCE_KEY,
    SUPPORTED_SUFFIXES,
    TIFF,
    ImageTooLargeError,
    PathLike,
    smallest_uint,
    suffix_of,
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_image_file(path: PathLike) -> bool:
    """Return whether ``path`` has a supported image suffix (case-insensitive).

    Only the name is examined (the file need not exist). Hidden names starting with ``.``
    are not images (temporary files, macOS ``._`` resource files).
    """
    p = Path(path)
    return suffix_of(p) in SUPPORTED_SUFFIXES and not p.name.startswith(".")


def check_max_pixels(max_pixels: Any) -> int | None:
    """``max_pixels`` as given (None = no limit), or a ``ValueError`` naming the fix."""
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) \
            or int(max_pixels) < 1:
        raise ValueError(
            f"max_pixels (--max-pixels) must be a positive whole number of pixels or None; "
            f"got {max_pixels!r}."
        )
    return int(max_pixels)


def _check_size(p: Path, shape: tuple[int, ...], max_pixels: int | None) -> None:
    n = math.prod(int(s) for s in shape)
    if max_pixels is not None and n > max_pixels:
        raise ImageTooLargeError(
            f"cannot read {p}: too large: {n} pixels ({' x '.join(str(s) for s in shape)}) > "
            f"limit {max_pixels}; raise --max-pixels (max_pixels= in Python) if it fits in "
            "memory, or use physeg.families.heat.blockwise for images that do not."
        )


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
    suffix = suffix_of(p)
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"unsupported file type {p.suffix or '(no suffix)'!r} for {p}; supported suffixes: "
            f"{', '.join(SUPPORTED_SUFFIXES)}."
        )
    if p.stat().st_size == 0:
        raise ValueError(f"could not read {p}: the file is empty (0 bytes).")
    return p


def _corrupt(p: Path, err: BaseException | None = None) -> ValueError:
    fmt = FORMAT_NAME[suffix_of(p)]
    detail = f" ({type(err).__name__}: {err})" if err is not None else ""
    return ValueError(
        f"could not read {p}: the file is corrupt or not a {fmt} file{detail}. "
        "Re-export it, or check that its suffix matches its format."
    )


def _png_ihdr(p: Path) -> tuple[int, int, int, int] | None:
    """(rows, cols, bit depth, colour type) of a PNG, or None when it has no PNG header."""
    with open(p, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    cols = int.from_bytes(head[16:20], "big")
    rows = int.from_bytes(head[20:24], "big")
    return rows, cols, head[24], head[25]


@contextlib.contextmanager
def _pillow_unguarded() -> Iterator[None]:
    """Pillow's own decompression-bomb guard off: physeg has checked the declared size
    against ``max_pixels`` already, and the user may have raised that limit."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, RuntimeError)


def _read_pillow(p: Path, *, palette_indices: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    import imageio.v3 as iio
    from PIL import Image

    suffix = suffix_of(p)
    if suffix == ".png":
        ihdr = _png_ihdr(p)
        if ihdr is None:
            raise _corrupt(p)
        rows, cols, depth, ctype = ihdr
        _check_size(p, (rows, cols), max_pixels)
        if depth == 16 and ctype in (2, 4, 6):
            raise ValueError(
                f"cannot read {p} exactly: it is a 16-bit colour (or grey+alpha) PNG and the "
                "PNG reader (Pillow) would reduce it to 8 bits. Convert it to a 16-bit TIFF "
                "(e.g. tifffile.imwrite('x.tif', array)) and read that instead."
            )
    with _pillow_unguarded():
        try:
            if suffix != ".png":
                with Image.open(p) as im:  # parses the header only
                    cols, rows = im.size
                _check_size(p, (rows, cols), max_pixels)
            kwargs: dict[str, Any] = {}
            if palette_indices and suffix == ".png":
                meta = iio.immeta(p, plugin="pillow", exclude_applied=False)
                if meta.get("mode") == "P":
                    kwargs["mode"] = "P"
            arr = iio.imread(p, plugin="pillow", **kwargs)
        except ImageTooLargeError:
            raise
        except _PILLOW_ERRORS as err:
            raise _corrupt(p, err) from None
    return np.asarray(arr)


def _tiff_layout(tif: Any) -> tuple[tuple[int, ...], str, bool]:
    """(shape, axes, stacked) of an open TIFF as :func:`_read_tiff` returns it, no decoding.

    Several single-image series of one size (pages written one by one) are a volume
    (``stacked``)."""
    series = tif.series
    shape = tuple(int(s) for s in series[0].shape)
    axes = series[0].axes
    same = {(tuple(s.shape), str(s.dtype)) for s in series}
    stacked = len(series) > 1 and len(same) == 1
    if stacked:
        shape, axes = (len(series),) + shape, "Q" + axes
    return shape, axes, stacked


def _has_channels(axes: str, shape: tuple[int, ...]) -> bool:
    return axes.endswith("S") or (axes.endswith("C") and shape[-1] in (3, 4))


def _spatial(shape: tuple[int, ...], has_channels: bool) -> tuple[int, ...]:
    if has_channels:
        shape = shape[:-1]
    while len(shape) > 2 and shape[0] == 1:  # singleton leading axes tifffile may add
        shape = shape[1:]
    return shape


def _tiff_info(p: Path) -> tuple[tuple[int, ...], bool]:
    """(spatial shape, has_channels) of a TIFF as :func:`_read_tiff` returns it, no decoding."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            shape, axes, _ = _tiff_layout(tif)
    except Exception as err:  # tifffile raises many types for bad files
        raise _corrupt(p, err) from None
    has_channels = _has_channels(axes, shape)
    return _spatial(shape, has_channels), has_channels


def _read_tiff(p: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, bool]:
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            shape, axes, stacked = _tiff_layout(tif)
            has_channels = _has_channels(axes, shape)
            _check_size(p, _spatial(shape, has_channels), max_pixels)
            if stacked:
                arr = np.stack([s.asarray() for s in tif.series])
            else:
                arr = tif.series[0].asarray()
    except ImageTooLargeError:
        raise
    except Exception as err:  # tifffile raises many types for bad files
        raise _corrupt(p, err) from None
    arr = np.asarray(arr)
    # Drop singleton leading axes tifffile may add (e.g. 'Q' of size 1); keep (rows, cols[, C]).
    while arr.ndim > 2 + has_channels and arr.shape[0] == 1:
        arr = arr[0]
    return arr, has_channels


def _read_any(path: PathLike, *, palette_indices: bool = False,
              max_pixels: Any = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, bool, Path]:
    max_pixels = check_max_pixels(max_pixels)
    p = _check_readable(path)
    if suffix_of(p) in TIFF:
        arr, has_channels = _read_tiff(p, max_pixels)
    else:
        arr = _read_pillow(p, palette_indices=palette_indices, max_pixels=max_pixels)
        has_channels = arr.ndim == 3
    if arr.ndim < 2 or arr.size == 0:
        raise ValueError(f"could not read {p}: it holds no 2D image (shape {arr.shape}).")
    return arr, has_channels, p


def read_image(path: PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image or a volume exactly as stored (no rescaling, no colour conversion).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.tif`` or ``.tiff`` file.
    max_pixels : int or None, default DEFAULT_MAX_PIXELS (100 million)
        Refuse, before decoding, a file that declares more pixels (voxels of a volume;
        channels not counted); None reads any size.

    Returns
    -------
    numpy.ndarray
        The stored dtype (``uint8``, ``uint16``, ``float32``, ``bool`` for 1-bit images, ...)
        and shape: ``(rows, cols)`` grey, ``(rows, cols, C)`` with channels (RGB, RGBA,
        grey+alpha, or a TIFF with C samples per pixel), or ``(planes, rows, cols[, C])`` for
        a multi-page TIFF volume. :func:`read_image_and_axis` also says which.

    Raises
    ------
    FileNotFoundError
        The file does not exist (the message names the path).
    IsADirectoryError
        ``path`` is a folder.
    ImageTooLargeError
        More pixels than ``max_pixels`` (a ``ValueError``; the message names the fix).
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
    arr, _, _ = _read_any(path, max_pixels=max_pixels)
    return arr


def read_image_and_axis(
    path: PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, int | None]:
    """:func:`read_image`, plus the axis the file stores channels in.

    Returns ``(image, -1)`` when the file stores several samples per pixel (RGB, RGBA,
    grey+alpha PNG, a TIFF with samples per pixel), ``(image, None)`` for grey images and
    plain volumes. The colour policy (:func:`physeg._validate.colour_axis`) uses this, so a
    grey+alpha PNG ``(rows, cols, 2)`` or a 5-sample TIFF is never taken for a volume.
    """
    arr, has_channels, _ = _read_any(path, max_pixels=max_pixels)
    return arr, (-1 if has_channels else None)


def read_mask(path: PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an integer label image (2D or 3D), 0 = background.

    Parameters
    ----------
    path : str or os.PathLike
        A label PNG / TIFF (or BMP); JPEG masks are read too but are usually damaged by
        compression.
    max_pixels : int or None, default DEFAULT_MAX_PIXELS
        As for :func:`read_image`.

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
    arr, has_channels, p = _read_any(path, palette_indices=True, max_pixels=max_pixels)
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
    return arr.astype(smallest_uint(hi))


def read_provenance(path: PathLike) -> dict[str, Any] | None:
    """Return the provenance stored by :func:`write_labels`, or None (absent or unreadable)."""
    p = Path(path)
    try:
        if suffix_of(p) == ".png":
            from PIL import Image

            with _pillow_unguarded(), Image.open(p) as im:
                text = getattr(im, "text", {}).get(PROVENANCE_KEY)
            return None if text is None else json.loads(text)
        if suffix_of(p) in TIFF:
            import tifffile

            with tifffile.TiffFile(p) as tf:
                desc = tf.pages[0].description
            prefix = f"{PROVENANCE_KEY}:"
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
    from ._common import LABEL_SUFFIXES

    if not suffix.startswith("."):
        suffix = "." + suffix
    if suffix.lower() not in LABEL_SUFFIXES:
        raise ValueError(
            f"label outputs must be {', '.join(LABEL_SUFFIXES)}; got suffix {suffix!r}."
        )
    src = Path(input_path)
    if suffix_of(src) in TIFF and suffix.lower() == ".png" and src.is_file():
        if len(_tiff_info(src)[0]) >= 3:
            suffix = ".tif"
    return Path(out_dir) / (src.stem + suffix)


def _spatial_shape(path: PathLike) -> tuple[int, ...]:
    """Spatial shape of an image file (channels dropped), read from its header when possible.

    Exposed for :mod:`physeg.data.datasets` (shape checks without decoding pixels).
    """
    p = _check_readable(path)
    if suffix_of(p) in TIFF:
        return _tiff_info(p)[0]
    import imageio.v3 as iio

    with _pillow_unguarded():
        try:
            props = iio.improps(p, plugin="pillow")
        except _PILLOW_ERRORS as err:
            raise _corrupt(p, err) from None
    return tuple(int(s) for s in props.shape[:2])
