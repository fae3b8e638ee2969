"""Shared input validation: one place for the checks every method needs.

Every public function in physeg validates its input at the top with these helpers, so error
messages look the same everywhere and always say what was expected, what was received and how
to fix it.
"""

from __future__ import annotations

import difflib
import numbers
from typing import Any, Iterable

import numpy as np

__all__ = [
    "as_rng",
    "check_image",
    "check_labels_like",
    "look_up_option",
    "to_float01",
]


def as_rng(rng: None | int | np.random.Generator) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` from ``None``, an int seed or a generator.

    Never touches the global ``np.random`` state (SPEC 7).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (numbers.Integral, np.integer)):
        if rng is not None and int(rng) < 0:
            raise ValueError(f"rng seed must be a non-negative integer, got {rng}.")
        return np.random.default_rng(None if rng is None else int(rng))
    raise TypeError(
        f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}."
    )


def look_up_option(value: str, options: Iterable[str], *, what: str = "option") -> str:
    """Return ``value`` if it is one of ``options``; otherwise raise with a "did you mean".

    Matching is case-insensitive and treats ``_`` and ``-`` alike.
    """
    options = list(options)
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, one of {options}; got {value!r}.")
    norm = {o.lower().replace("_", "-"): o for o in options}
    key = value.lower().replace("_", "-")
    if key in norm:
        return norm[key]
    close = difflib.get_close_matches(key, list(norm), n=1)
    hint = f" Did you mean {norm[close[0]]!r}?" if close else ""
    raise ValueError(f"Unknown {what} {value!r}; expected one of {options}.{hint}")


def check_image(
    image: Any,
    *,
    channel_axis: int | None = None,
    allow_3d: bool = True,
    allow_channels: bool = True,
    min_size: int = 2,
    name: str = "image",
) -> np.ndarray:
    """Validate an image and return it with any channel axis moved last.

    Parameters
    ----------
    image : array_like
        (rows, cols) grey, (planes, rows, cols) volume, or either with a channel axis.
    channel_axis : int or None
        Axis holding colour channels; ``None`` means single-channel.
    allow_3d, allow_channels : bool
        Whether volumes / multichannel images are accepted by the caller.
    min_size : int
        Smallest accepted extent of every spatial axis.

    Returns
    -------
    numpy.ndarray
        The same data (not copied unless needed) with channels last when ``channel_axis``
        is given. The caller's array is never modified by physeg.

    Raises
    ------
    TypeError
        Not numeric (e.g. strings, objects, complex).
    ValueError
        Wrong number of dimensions, empty, too small, NaN or infinite values.
    """
    if image is None:
        raise TypeError(f"{name} is None; expected a numpy array (rows, cols[, channels]).")
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(
            f"{name} has dtype {arr.dtype}; expected an integer or real floating dtype "
            "(uint8, uint16, float32, ...). Convert it with np.asarray(img, dtype=np.float32)."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected at least a 2x2 image.")
    if channel_axis is not None:
        if not allow_channels:
            raise ValueError(
                f"this method works on single-channel {name}s; got channel_axis={channel_axis}. "
                "Convert to grey first (e.g. skimage.color.rgb2gray)."
            )
        if not -arr.ndim <= channel_axis < arr.ndim:
            raise ValueError(
                f"channel_axis={channel_axis} is out of range for a {arr.ndim}-D {name} "
                f"of shape {arr.shape}."
            )
        arr = np.moveaxis(arr, channel_axis, -1)
        spatial = arr.shape[:-1]
    else:
        spatial = arr.shape
    max_nd = 3 if allow_3d else 2
    if not 2 <= len(spatial) <= max_nd:
        hint = (
            " If the last axis holds colour channels, pass channel_axis=-1."
            if channel_axis is None and arr.ndim == 3 and arr.shape[-1] in (3, 4)
            else ""
        )
        kind = "2D or 3D" if allow_3d else "2D"
        raise ValueError(
            f"{name} must be {kind} (spatial shape (rows, cols) or (planes, rows, cols)); got "
            f"shape {arr.shape} with channel_axis={channel_axis}.{hint}"
        )
    if min(spatial) < min_size:
        raise ValueError(
            f"{name} is too small: spatial shape {spatial}, every axis needs at least "
            f"{min_size} pixels."
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite values; replace them first "
            "(e.g. np.nan_to_num) or mask them out."
        )
    return arr


def check_labels_like(
    labels: Any, image_shape: tuple[int, ...], *, name: str = "mask"
) -> np.ndarray:
    """Validate a label/mask array against the spatial shape of its image."""
    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        if np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab)) and np.all(
            lab == np.round(lab)
        ):
            lab = lab.astype(np.int64)
        else:
            raise TypeError(
                f"{name} must hold integer labels (0 = background); got dtype {lab.dtype}."
            )
    if tuple(lab.shape) != tuple(image_shape):
        raise ValueError(
            f"{name} shape {lab.shape} does not match the image's spatial shape "
            f"{tuple(image_shape)}; every mask must have exactly its image's size."
        )
    if lab.size and lab.min() < 0:
        raise ValueError(f"{name} has negative labels (min {lab.min()}); labels must be >= 0.")
    return lab


def to_float01(image: np.ndarray) -> np.ndarray:
    """Map an image to float32 in [0, 1] by its dtype's range (no data-dependent stretch).

    Integer images are divided by their dtype maximum (uint8 by 255, uint16 by 65535).
    Float images already in [0, 1] are kept; other float ranges are min-max scaled, which
    is the only data-dependent step and is documented by every method that uses this.
    """
    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        if info.min < 0:
            lo, hi = float(arr.min()), float(arr.max())
            return ((arr.astype(np.float32) - lo) / max(hi - lo, 1e-12)).astype(np.float32)
        return (arr.astype(np.float32) / np.float32(info.max)).astype(np.float32)
    out = arr.astype(np.float32, copy=True)
    lo, hi = float(out.min()), float(out.max())
    if lo >= 0.0 and hi <= 1.0:
        return out
    return ((out - lo) / max(hi - lo, 1e-12)).astype(np.float32)
