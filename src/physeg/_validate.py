"""Shared input validation and the one colour policy.

Every public function in physeg validates its input at the top with these helpers, so error
messages look the same everywhere and always say what was expected, what was received and how
to fix it.

Colour policy (every layer asks these functions, none decides on its own)
-------------------------------------------------------------------------
* **Which axis is colour** (:func:`colour_axis`). ``"auto"`` (files): what the file says
  (:func:`physeg.io.read_image_and_axis`: a 2D file with channels has channels last, whatever
  their number, so a grey+alpha PNG or a 5-sample TIFF is never a volume); for an array of
  unknown origin, the last axis of a 3D array with 3 or 4 entries (RGB, RGBA) or of any 4D
  array (a colour volume). ``None`` ("the user says volume"): grey or a plain volume; an
  integer names the axis. :func:`parse_channel_axis` turns the CLI's ``--channel-axis`` text
  into one of these. Against a mask, an image with one more axis than the mask has colour
  last (:func:`channel_axis_from_mask`).
* **Python arrays** (:func:`check_image`) follow scikit-image: ``channel_axis=None`` means no
  colour axis, nothing is guessed, except that a (rows, cols, 3 | 4) array without
  ``channel_axis`` is refused in one line (:func:`looks_like_colour`): read as a volume it
  would have planes 3 or 4 pixels wide, so it is an RGB(A) array given without
  ``channel_axis=-1``, and a silent 3-plane "volume" would be the wrong answer.
* **Colour for a method** (:func:`prepare_colour`). Colour goes last and alpha is dropped (it
  carries no intensity): the last of 2 channels (grey+alpha = grey) or of 4 (RGBA), the rule
  :func:`physeg.io.read_mask` uses too. A method that declares ``supports_multichannel`` gets
  the channels; any other gets their equal-weight mean of the intensities mapped to [0, 1] by
  the dtype's range (uint8 / 255, uint16 / 65535; floats unchanged): a fixed,
  data-independent scale, equal weights (no assumption that the channels are sRGB).
* **Grey inside a method** (:func:`to_grey`): the same equal-weight mean, on the values given.
* **Display** (:func:`channels_last`, then :func:`display_rgb`): RGB in [0, 1] for viewing
  only (integers by their dtype range, floats by their own finite minimum and maximum, a
  constant image mid-grey).
"""

from __future__ import annotations

import difflib
import numbers
from typing import Any, Iterable

import numpy as np

__all__ = [
    "as_rng",
    "channel_axis_from_mask",
    "check_training_pairs",
    "check_image",
    "channels_last",
    "colour_axis",
    "display_rgb",
    "parse_channel_axis",
    "prepare_colour",
    "to_grey",
    "check_labels_like",
    "look_up_option",
    "looks_like_colour",
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
    if channel_axis is None and looks_like_colour(arr.shape):
        # scikit-image's convention (channel_axis=None = no colour axis) would read this as a
        # volume of planes only 3 or 4 pixels wide, which is never what an RGB array means:
        # refuse it, in one line, rather than return such a "volume" silently
        raise ValueError(
            f"{name} of shape {arr.shape} looks like a colour image (channels last), but "
            "channel_axis=None reads it as a volume of planes 3 or 4 pixels wide; pass "
            "channel_axis=-1 for colour (on the command line: --channel-axis -1), or convert "
            "it to grey first."
        )
    if not 2 <= len(spatial) <= max_nd:
        hint = (
            " If the last axis holds colour channels, pass channel_axis=-1 (on the command "
            "line: --channel-axis -1)."
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


def looks_like_colour(shape: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` given without ``channel_axis`` is surely colour.

    (rows, cols, 3 | 4) with rows and cols above 4: as a volume (planes, rows, cols) it would
    be planes only 3 or 4 pixels wide, which no real volume is, while every RGB(A) array has
    this shape. :func:`check_image` refuses such an array without ``channel_axis``.
    """
    return len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4


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


# --------------------------------------------------------------------------- colour policy


def parse_channel_axis(value: Any) -> int | str | None:
    """``"auto"``, ``None`` or an int from a ``--channel-axis`` text (or such a value).

    ``"auto"`` and ``""`` give ``"auto"``; ``"none"``, ``"grey"``, ``"gray"`` give None.
    """
    if value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
        return None if value is None else int(value)
    text = str(value).strip().lower()
    if text in ("auto", ""):
        return "auto"
    if text in ("none", "grey", "gray"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"--channel-axis expects auto, none or an integer axis; got {value!r}."
        ) from None


def colour_axis(image: np.ndarray, channel_axis: int | str | None,
                stored_axis: int | None | str = "unknown") -> int | None:
    """Which axis of a read image holds colour (None = grey or plain volume).

    ``"auto"``: ``stored_axis`` when the reader says how the file stores channels
    (:func:`physeg.io.read_image_and_axis`: -1 or None); for an array of unknown origin
    (``stored_axis="unknown"``), the last axis of a 3D array with 3 or 4 entries, or of any
    4D array. None and an integer are the user's word and win over the file.
    """
    if channel_axis == "auto":
        if stored_axis != "unknown":
            return None if stored_axis is None else int(stored_axis) % image.ndim
        if (image.ndim == 3 and image.shape[-1] in (3, 4)) or image.ndim == 4:
            return image.ndim - 1
        return None
    if channel_axis is None:
        return None
    if not -image.ndim <= int(channel_axis) < image.ndim:
        raise ValueError(
            f"--channel-axis {channel_axis} is out of range for an image of shape {image.shape}."
        )
    return int(channel_axis) % image.ndim


def channels_last(image: np.ndarray, channel_axis: int | str | None = "auto",
                  stored_axis: int | None | str = "unknown") -> np.ndarray:
    """The image with its colour axis (:func:`colour_axis`) last, alpha kept: for display."""
    axis = colour_axis(image, channel_axis, stored_axis)
    return image if axis is None else np.moveaxis(image, axis, -1)


def channel_axis_from_mask(image: np.ndarray, mask: np.ndarray) -> int | None:
    """``-1`` when ``image`` has one more axis than its ``mask`` (colour last), else None."""
    return -1 if np.ndim(image) == np.ndim(mask) + 1 else None


def check_training_pairs(images: Any, masks: Any, *, allow_3d: bool
                         ) -> tuple[list[np.ndarray], list[np.ndarray], list[int | None]]:
    """Validated training (image, mask) pairs: images, masks and each image's channel axis.

    A pair is colour when the image has one more axis than its mask
    (:func:`channel_axis_from_mask`); errors name ``images[i]`` / ``masks[i]``.
    """
    arrs, labs, axes = [], [], []
    for i, (img, msk) in enumerate(zip(images, masks, strict=True)):
        img = np.asarray(img)
        ca = channel_axis_from_mask(img, msk)
        arr = check_image(img, channel_axis=ca, allow_3d=allow_3d, allow_channels=True,
                          name=f"images[{i}]")
        spatial = arr.shape[:-1] if ca is not None else arr.shape
        arrs.append(arr)
        labs.append(check_labels_like(msk, spatial, name=f"masks[{i}]"))
        axes.append(None if ca is None else -1)
    return arrs, labs, axes


def to_grey(image: np.ndarray, channel_axis: int | None, *,
            dtype_range: bool = False) -> np.ndarray:
    """float32 grey image: the equal-weight mean of R, G, B (alpha dropped).

    ``channel_axis=None`` returns the image as float32. ``dtype_range=True`` first maps
    integer (and bool) values to [0, 1] by the dtype's range (:func:`to_float01`), after the
    alpha channel is dropped; floats are used unchanged.
    """
    if channel_axis is None:
        return image.astype(np.float32, copy=False)
    arr = np.moveaxis(image, channel_axis, -1)
    if arr.shape[-1] == 4:  # drop alpha: it carries no intensity
        arr = arr[..., :3]
    if dtype_range and (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        arr = to_float01(arr.astype(np.uint8) if arr.dtype == bool else arr)
    return arr.astype(np.float32, copy=False).mean(axis=-1)


def prepare_colour(image: np.ndarray, supports_colour: bool,
                   channel_axis: int | str | None = "auto",
                   stored_axis: int | None | str = "unknown") -> tuple[np.ndarray, int | None]:
    """Return ``(array, channel_axis)`` ready for ``physeg.segment``.

    Colour goes last and alpha is dropped (the last of 2 or 4 channels); one channel left
    (grey+alpha) is a grey image; a method that ``supports_colour`` gets the channels
    (``channel_axis=-1``), any other their mean on the dtype's range (:func:`to_grey` with
    ``dtype_range=True``, ``channel_axis=None``). A grey image is returned unchanged.
    ``stored_axis`` is the reader's word on the file (:func:`colour_axis`).
    """
    axis = colour_axis(image, channel_axis, stored_axis)
    if axis is None:
        return image, None
    arr = np.moveaxis(image, axis, -1)
    if arr.shape[-1] in (2, 4):  # alpha carries no intensity
        arr = arr[..., :-1]
    if arr.shape[-1] == 1:
        return arr[..., 0], None
    if not supports_colour:
        return to_grey(arr, -1, dtype_range=True), None
    return arr, -1


def display_rgb(image: np.ndarray) -> np.ndarray:
    """RGB float image in [0, 1] for viewing: grey, or channels last (alpha, the last of 2 or
    4, dropped; counts other than 1, 3 shown as the grey mean)."""
    img = np.asarray(image)
    if img.dtype == bool:
        img = img.astype(np.float32)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        f = (img.astype(np.float32) - info.min) / float(info.max - info.min)
    else:
        f = img.astype(np.float32)
        finite = np.isfinite(f)
        lo = float(f[finite].min()) if finite.any() else 0.0
        hi = float(f[finite].max()) if finite.any() else 1.0
        f = np.where(finite, f, lo)
        f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=-1)
    elif f.shape[-1] in (2, 4):  # alpha dropped
        f = display_rgb(img[..., :-1])
    elif f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    elif f.shape[-1] != 3:  # other channel counts: their mean, in grey
        f = np.repeat(f.mean(axis=-1, keepdims=True), 3, axis=-1)
    return np.clip(f, 0.0, 1.0)
