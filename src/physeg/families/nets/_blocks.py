"""Torch building blocks shared by the supervised networks (MSNet, U-Net, PDE-U-Net).

Private module: it imports torch at module level and is only imported lazily, from inside the
functions of :mod:`physeg.families.nets.msnet`, :mod:`physeg.families.nets.unet` and
:mod:`physeg.families.nets._arch` (which builds the networks by name).

Everything here is written once for 2D and 3D: ``ndim`` picks ``Conv2d``/``Conv3d``, the
matching transposed convolution, pooling and the interpolation mode (bilinear / trilinear).
Strides may be anisotropic (a tuple per level, e.g. ``(1, 2, 2)`` for thick-slice volumes).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "conv_cls",
    "conv_transpose_fn",
    "conv_fn",
    "avg_pool",
    "interp_mode",
    "normalize_strides",
    "divisor",
    "pad_to_multiple",
    "crop_to",
    "gaussian_kernel",
    "make_norm",
]


def conv_cls(ndim: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def conv_fn(ndim: int):
    """``F.conv2d`` or ``F.conv3d``."""
    return F.conv2d if ndim == 2 else F.conv3d


def conv_transpose_fn(ndim: int):
    """``F.conv_transpose2d`` or ``F.conv_transpose3d``."""
    return F.conv_transpose2d if ndim == 2 else F.conv_transpose3d


def avg_pool(ndim: int, stride: tuple[int, ...]) -> nn.Module:
    """Average pooling with kernel = stride (a restriction by cell averaging)."""
    return nn.AvgPool2d(stride, stride) if ndim == 2 else nn.AvgPool3d(stride, stride)


def interp_mode(ndim: int) -> str:
    """``"bilinear"`` (2D) or ``"trilinear"`` (3D)."""
    return "bilinear" if ndim == 2 else "trilinear"


def normalize_strides(
    strides: Sequence[int | Sequence[int]] | None, levels: int, ndim: int
) -> tuple[tuple[int, ...], ...]:
    """Per-level stride tuples between ``levels`` grids (``levels - 1`` transfers).

    ``None`` means 2 along every axis at every transfer; an int is used on every axis; a tuple
    gives one stride per spatial axis (1 or 2).
    """
    n = levels - 1
    if strides is None:
        return tuple((2,) * ndim for _ in range(n))
    strides = list(strides)
    if len(strides) != n:
        raise ValueError(
            f"strides must give one entry per grid transfer ({n} for {levels} levels); "
            f"got {len(strides)}: {strides!r}."
        )
    out = []
    for s in strides:
        t = (int(s),) * ndim if isinstance(s, (int,)) else tuple(int(v) for v in s)
        if len(t) != ndim or any(v not in (1, 2) for v in t):
            raise ValueError(
                f"each stride must be 1 or 2 per spatial axis ({ndim} axes); got {s!r}."
            )
        out.append(t)
    return tuple(out)


def divisor(strides: Sequence[Sequence[int]], ndim: int) -> tuple[int, ...]:
    """Product of the strides along each axis: inputs are padded to multiples of this."""
    d = [1] * ndim
    for s in strides:
        for a in range(ndim):
            d[a] *= int(s[a])
    return tuple(d)


def pad_to_multiple(x: torch.Tensor, div: Sequence[int]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad the spatial axes of ``x`` (B, C, *spatial) at the far end to multiples of ``div``.

    Reflection padding when every pad is smaller than its axis, replicate padding otherwise
    (reflection needs pad < size). Returns the padded tensor and the original spatial shape.
    """
    spatial = tuple(x.shape[2:])
    pads = [(-n) % d for n, d in zip(spatial, div, strict=True)]
    if not any(pads):
        return x, spatial
    flat: list[int] = []
    for p in reversed(pads):  # F.pad wants the last axis first
        flat += [0, p]
    mode = "reflect" if all(p < n for p, n in zip(pads, spatial, strict=True)) else "replicate"
    return F.pad(x, flat, mode=mode), spatial


def crop_to(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """Crop the spatial axes of ``x`` back to ``spatial`` (undo :func:`pad_to_multiple`)."""
    idx = (slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)
    return x[idx]


def gaussian_kernel(ndim: int, size: int, sigma: float) -> torch.Tensor:
    """Sampled Gaussian of ``size`` per axis, normalised to sum 1 (shape ``(size,)*ndim``)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g1 = torch.exp(-(r**2) / (2.0 * sigma**2))
    g = g1
    for _ in range(ndim - 1):
        g = g[..., None] * g1
    g = g / g.sum()
    return g.to(torch.float32)


def make_norm(kind: str, ndim: int, channels: int) -> nn.Module:
    """``"none"`` (identity), ``"batch"`` or ``"group"`` (up to 8 groups) normalisation."""
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels) if ndim == 2 else nn.BatchNorm3d(channels)
    if kind == "group":
        groups = math.gcd(channels, 8)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"norm must be 'none', 'batch' or 'group'; got {kind!r}.")
