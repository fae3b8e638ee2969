"""Overlay a label image on its image for viewing: coloured regions and boundaries.

:func:`overlay` returns the RGB array; :func:`write_overlay` writes it as a PNG (through
:mod:`physeg.io`'s atomic writer), for ``physeg segment --overlay`` and the reports.

Choices: the image is mapped to [0, 1] for display only by the colour policy's
:func:`physeg._validate.display_rgb` (integers by their dtype range, floats by their own
minimum and maximum; a constant image is shown mid-grey). Label 0
(background) is not tinted. Labels 1, 2, ... take colours from a fixed palette (cycled
after 10 labels), blended with weight ``alpha``; region boundaries are drawn opaque. A 3D
volume shows its middle plane (``plane`` chooses another one). Written overlays carry a
legend (:func:`legend_strip`): a strip below the picture naming each label present with its
colour, so a file read alone says what its colours mean.
"""

from __future__ import annotations

import io as _io
import math
import os
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np

from ._validate import display_rgb

__all__ = ["PALETTE", "overlay", "write_overlay", "legend_strip", "with_legend", "png_bytes",
           "shrink"]

#: RGB colours (uint8) of labels 1, 2, ... (Tableau 10); cycled for larger labels.
PALETTE: np.ndarray = np.array(
    [
        (255, 127, 14),
        (31, 119, 180),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ],
    dtype=np.uint8,
)


def overlay(
    image: Any,
    labels: Any,
    *,
    alpha: float = 0.35,
    boundaries: bool = True,
    colors: Sequence[Sequence[int]] | None = None,
    plane: int | None = None,
) -> np.ndarray:
    """Blend label colours and boundaries onto an image; return uint8 RGB.

    Parameters
    ----------
    image : array_like
        (rows, cols) grey, (rows, cols, C) channels (RGB, RGBA, grey+alpha; other counts are
        shown as their grey mean), or a volume (planes, rows, cols[, C])
        matching a 3D ``labels``. Any numeric dtype; scaled to [0, 1] for display only.
    labels : array_like of int
        (rows, cols) or (planes, rows, cols); 0 = background (not tinted).
    alpha : float, default 0.35
        Opacity of the region tint in [0, 1]; 0 shows only boundaries, 1 hides the image.
    boundaries : bool, default True
        Draw label boundaries (pixels whose 4-neighbourhood holds another label) opaque.
    colors : sequence of RGB triples (0..255), optional
        Colours of labels 1, 2, ...; default :data:`PALETTE`.
    plane : int, optional
        Plane shown for 3D inputs; default the middle one.

    Returns
    -------
    numpy.ndarray of uint8, shape (rows, cols, 3)

    Examples
    --------
    >>> img = np.zeros((8, 8), np.uint8); lab = np.zeros((8, 8), int); lab[2:6, 2:6] = 1
    >>> rgb = overlay(img, lab)
    >>> rgb.shape, rgb.dtype.name, rgb[0, 0].tolist(), rgb[2, 2].tolist()
    ((8, 8, 3), 'uint8', [0, 0, 0], [255, 127, 14])
    """
    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be an integer array (0 = background); got {lab.dtype}.")
    img = np.asarray(image)
    if lab.ndim == 3:
        k = lab.shape[0] // 2 if plane is None else int(plane)
        if not 0 <= k < lab.shape[0]:
            raise ValueError(f"plane {k} is out of range for {lab.shape[0]} planes.")
        lab = lab[k]
        img = img[k]
    elif lab.ndim != 2:
        raise ValueError(f"labels must be 2D or 3D; got shape {lab.shape}.")
    if img.shape[:2] != lab.shape or img.ndim not in (2, 3):  # any channels: display_rgb
        raise ValueError(
            f"image shape {np.shape(image)} does not match labels shape {np.shape(labels)}; "
            "expected the same spatial shape (colour channels last)."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}.")
    pal = PALETTE if colors is None else np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    base = display_rgb(img)
    fg = lab > 0
    colour = pal[(np.maximum(lab, 1) - 1) % len(pal)].astype(np.float32) / 255.0
    out = np.where(fg[..., None], (1.0 - alpha) * base + alpha * colour, base)
    if boundaries:
        edge = np.zeros(lab.shape, dtype=bool)
        dv = lab[1:, :] != lab[:-1, :]
        dh = lab[:, 1:] != lab[:, :-1]
        edge[1:, :] |= dv
        edge[:-1, :] |= dv
        edge[:, 1:] |= dh
        edge[:, :-1] |= dh
        # Boundary pixels take the colour of their own label (background side: the neighbour's
        # colour would be ambiguous, so use white for label 0).
        edge_col = np.where(fg[..., None], colour, 1.0)
        out = np.where(edge[..., None], edge_col, out)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


#: Height of one legend row in pixels, and the most rows a legend takes.
LEGEND_ROW, LEGEND_MAX_ROWS = 14, 3


def legend_strip(labels: Any, width: int,
                 colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """A uint8 RGB strip ``width`` wide naming the labels present in ``labels``.

    One swatch and number per non-zero label, in :func:`overlay`'s colours, after
    ``"labels:"`` (``"no object (all label 0)"`` when there is none); entries wrap onto at
    most :data:`LEGEND_MAX_ROWS` rows of :data:`LEGEND_ROW` pixels, the rest summed up as
    ``"+N"``. Label 0, the background, is untinted in the picture and not listed.
    """
    from PIL import Image, ImageDraw, ImageFont

    pal = PALETTE if colors is None else np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    values = [int(v) for v in np.unique(np.asarray(labels)) if v > 0]
    font = ImageFont.load_default()
    width = max(int(width), 1)

    def text_width(text: str) -> int:
        box = font.getbbox(text)
        return int(box[2] - box[0])

    head = "labels:" if values else "no object (all label 0)"
    # the heading only where it leaves room for an entry (a narrow picture shows swatches)
    rows: list[list[tuple[Any, str]]] = [[(None, head)]] if (
        not values or text_width(head) + 40 <= width) else [[]]
    x = 2 + (text_width(head) + 6 if rows[0] else 0)
    shown = 0
    more = text_width(f"+{len(values)}") + 4  # room kept on the last row for "+N"
    for i, v in enumerate(values):
        w = 12 + text_width(str(v)) + 8
        last = i == len(values) - 1
        if x + w + (0 if last else more) > width and rows[-1]:
            if len(rows) == LEGEND_MAX_ROWS:
                break
            rows.append([])
            x = 2
        rows[-1].append((tuple(int(c) for c in pal[(v - 1) % len(pal)]), str(v)))
        x += w
        shown += 1
    if shown < len(values):  # what did not fit, counted
        rows[-1].append((None, f"+{len(values) - shown}"))
    strip = Image.new("RGB", (width, LEGEND_ROW * len(rows)), (40, 40, 40))
    draw = ImageDraw.Draw(strip)
    for r, row in enumerate(rows):
        x, y = 2, r * LEGEND_ROW
        for colour, text in row:
            if colour is not None:
                draw.rectangle([x, y + 3, x + 8, y + 11], fill=colour)
                x += 12
            draw.text((x, y + 1), text, fill=(235, 235, 235), font=font)
            x += text_width(text) + (8 if colour is not None else 6)
    return np.asarray(strip, dtype=np.uint8)


def with_legend(rgb: np.ndarray, labels: Any,
                colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """``rgb`` with :func:`legend_strip` of ``labels`` (the plane shown) appended below."""
    return np.concatenate([rgb, legend_strip(labels, rgb.shape[1], colors)], axis=0)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode a uint8 RGB (or grey) array as an optimised PNG."""
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Keep every k-th pixel (nearest neighbour: labels stay crisp) so no side exceeds
    ``max_side``."""
    step = int(math.ceil(max(rgb.shape[:2]) / max_side))
    return rgb if step <= 1 else np.ascontiguousarray(rgb[::step, ::step])


def write_overlay(path: str | os.PathLike, image: Any, labels: Any, *, alpha: float = 0.35,
                  max_side: int | None = None, overwrite: bool = True,
                  protect: Collection[str | os.PathLike] = (), legend: bool = True) -> Path:
    """Write ``image`` with ``labels`` overlaid (:func:`overlay`) as an RGB PNG.

    Parameters
    ----------
    path : path
        Output ``.png`` (written atomically by :func:`physeg.io.atomic_write_bytes`; parent
        folders created).
    image : array_like
        Grey (rows, cols), colour (rows, cols, 3|4) or a volume (its middle plane is shown).
    labels : array_like of int
        Same spatial shape; 0 = background (not tinted).
    alpha : float, default 0.35
        Tint opacity in [0, 1].
    max_side : int, optional
        Downsample (:func:`shrink`) so the longer side is at most this.
    overwrite : bool, default True
        Replace an existing file; False raises ``FileExistsError`` instead.
    protect : collection of paths, default ()
        Input files that must never be written (:class:`physeg.io.ProtectedPathError`).
    legend : bool, default True
        Append :func:`legend_strip` below the picture (the labels of the plane shown); a
        report whose page carries the legend passes False.
    """
    from .io import atomic_write_bytes

    rgb = overlay(image, labels, alpha=alpha)
    if max_side is not None:
        rgb = shrink(rgb, max_side)
    if legend:
        lab = np.asarray(labels)
        rgb = with_legend(rgb, lab[lab.shape[0] // 2] if lab.ndim == 3 else lab)
    return atomic_write_bytes(path, png_bytes(rgb), overwrite=overwrite, protect=protect)
