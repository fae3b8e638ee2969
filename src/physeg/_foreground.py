"""Which phase is the object: the ``foreground`` rule and single-object post-processing.

Every method that can return a binary result takes ``foreground``:

``"bright"``
    label 1 is the brighter phase (the mean intensity over channels of the phase);
``"dark"``
    label 1 is the darker phase;
``"auto"`` (default) — the object prior
    label 1 is the phase that holds the smaller share of the image border (the outermost
    pixels of every axis, faces of a volume): a photographed or imaged object is framed by its
    background, and many small objects (nuclei, cells) leave most of the border to the
    background as well. When the two phases hold the border about equally (shares within
    ``BORDER_MARGIN`` of each other, e.g. a band across the whole image), the phase with fewer
    pixels is the object (objects are usually the minority). **Where it fails**: an object that
    fills the frame and touches most of the border (a close-up, a lesion cropped by the image
    edge, a foreground *background* such as a dark room around a bright window); pass
    ``"bright"`` or ``"dark"`` there.

For K > 2 phases the same prior picks label 0: the phase with the largest border share is the
background (a tie with the darkest phase keeps the darkest); the other phases follow in order of
brightness.

``objects="one"`` keeps the largest connected object (face connectivity) and fills its holes
(:func:`keep_one_object`); ``"all"`` keeps every object.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["FOREGROUND_RULES", "OBJECT_RULES", "BORDER_MARGIN", "border_mask", "border_shares",
           "foreground_order", "order_by_foreground", "keep_one_object", "apply_rules"]

FOREGROUND_RULES = ("auto", "bright", "dark")
OBJECT_RULES = ("all", "one")
#: border shares closer than this (fractions of the border pixels) count as a tie
BORDER_MARGIN = 0.1


def border_mask(shape: tuple[int, ...], width: int | Sequence[int] = 1) -> np.ndarray:
    """True on the outer ``width`` pixels of every axis (an int, or one per axis)."""
    widths = [width] * len(shape) if np.ndim(width) == 0 else list(width)
    border = np.zeros(shape, bool)
    for axis, (n, w) in enumerate(zip(shape, widths, strict=True)):
        index: list[Any] = [slice(None)] * len(shape)
        index[axis] = np.r_[0:w, n - w:n]
        border[tuple(index)] = True
    return border


def border_shares(labels: np.ndarray, classes: int) -> np.ndarray:
    """Fraction of the border pixels held by each phase 0..classes-1 (sums to 1)."""
    on_border = labels[border_mask(labels.shape)]
    return np.bincount(on_border.ravel(), minlength=classes)[:classes] / on_border.size


def foreground_order(labels: np.ndarray, brightness: Any, rule: str) -> np.ndarray:
    """The phase order that makes the ``foreground`` ``rule`` hold: ``order[i]`` becomes label i.

    Parameters
    ----------
    labels : ndarray of int
        Phases 0..K-1, any order.
    brightness : array_like (K,)
        A brightness per phase (e.g. the mean intensity over channels); orders the phases for
        ``"bright"`` / ``"dark"`` and the non-background phases for K > 2.
    rule : {"auto", "bright", "dark"}

    Returns
    -------
    ndarray of int (K,)
        For K = 2, ``order[1]`` is the object by the rule. For K > 2, ``order[0]`` is the
        background (``"auto"``: the largest border share, ties within ``BORDER_MARGIN`` keep
        the darkest; ``"bright"``: the darkest phase; ``"dark"``: the brightest), the others
        follow in order of brightness.
    """
    brightness = np.asarray(brightness, dtype=np.float64)
    classes = brightness.size
    by_brightness = np.argsort(brightness, kind="stable")  # darkest first
    if rule == "bright":
        return by_brightness
    if rule == "dark":
        return np.concatenate([by_brightness[-1:], by_brightness[:-1]])
    shares = border_shares(labels, classes)
    if classes == 2:
        if abs(shares[0] - shares[1]) >= BORDER_MARGIN:
            background = int(np.argmax(shares))
        else:  # the border does not decide: the minority phase is the object
            counts = np.bincount(labels.ravel(), minlength=2)[:2]
            if counts[0] == counts[1]:
                return by_brightness
            background = int(np.argmax(counts))
        return np.array([background, 1 - background])
    darkest = int(by_brightness[0])
    background = int(np.argmax(shares))
    if shares[background] - shares[darkest] < BORDER_MARGIN:
        background = darkest  # a tie keeps the brightness order
    return np.array([background, *(k for k in by_brightness if k != background)])


def order_by_foreground(labels: np.ndarray, brightness: Any, rule: str) -> np.ndarray:
    """``labels`` relabelled by :func:`foreground_order` (uint8 for K <= 256)."""
    order = foreground_order(labels, brightness, rule)
    lut = np.empty(order.size, np.intp)
    lut[order] = np.arange(order.size)
    return lut[labels].astype(np.uint8 if order.size <= 256 else labels.dtype)


def keep_one_object(labels: np.ndarray) -> np.ndarray:
    """Binary ``labels`` with only the largest connected object (label 1), its holes filled.

    Connectivity is face connectivity (4 in 2D, 6 in 3D); an image without any object is
    returned unchanged.
    """
    from scipy import ndimage as ndi

    obj = np.asarray(labels) == 1
    components, n = ndi.label(obj)
    if n == 0:
        return np.asarray(labels)
    sizes = np.bincount(components.ravel())[1:]
    largest = components == (1 + int(np.argmax(sizes)))
    return ndi.binary_fill_holes(largest).astype(np.asarray(labels).dtype)


def apply_rules(labels: np.ndarray, brightness: Any, foreground: str,
                objects: str = "all") -> np.ndarray:
    """:func:`order_by_foreground`, then ``objects="one"`` for binary results."""
    out = order_by_foreground(np.asarray(labels), np.asarray(brightness), foreground)
    if objects == "one" and np.asarray(brightness).size == 2:
        out = keep_one_object(out)
    return out
