"""Plain U-Net as a torch module (private; imported lazily by :mod:`physeg.families.nets.unet`)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from . import _blocks as B

__all__ = ["UNet"]


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, ndim: int, norm: str):
        conv = B.conv_cls(ndim)
        super().__init__(
            conv(cin, cout, 3, padding=1), B.make_norm(norm, ndim, cout), nn.ReLU(inplace=True),
            conv(cout, cout, 3, padding=1), B.make_norm(norm, ndim, cout), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015): DoubleConv encoder with max-pooling, transposed-conv
    decoder with skip concatenation, 1x1 output to class logits; 2D or 3D.

    Inputs not divisible by the product of the strides are reflect-padded and cropped back.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, *, ndim: int = 2,
                 widths: Sequence[int] = (16, 32, 64, 128, 256),
                 strides: Sequence[Any] | None = None, norm: str = "none"):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3; got {ndim!r}.")
        widths = tuple(int(w) for w in widths)
        self.ndim = ndim
        self.levels = len(widths)
        self.strides = B.normalize_strides(strides, self.levels, ndim)
        self.divisor = B.divisor(self.strides, ndim)
        pool = nn.MaxPool2d if ndim == 2 else nn.MaxPool3d
        convt = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        self.enc = nn.ModuleList([_DoubleConv(in_channels, widths[0], ndim, norm)])
        self.pools = nn.ModuleList()
        for i in range(1, self.levels):
            self.pools.append(pool(self.strides[i - 1], self.strides[i - 1]))
            self.enc.append(_DoubleConv(widths[i - 1], widths[i], ndim, norm))
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(self.levels - 1, 0, -1):
            s = self.strides[i - 1]
            self.ups.append(convt(widths[i], widths[i - 1], s, stride=s))
            self.dec.append(_DoubleConv(2 * widths[i - 1], widths[i - 1], ndim, norm))
        self.out = B.conv_cls(ndim)(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, spatial = B.pad_to_multiple(x, self.divisor)
        skips = []
        h = self.enc[0](x)
        for pool, enc in zip(self.pools, self.enc[1:], strict=True):
            skips.append(h)
            h = enc(pool(h))
        for up, dec in zip(self.ups, self.dec, strict=True):
            h = dec(torch.cat([skips.pop(), up(h)], dim=1))
        return B.crop_to(self.out(h), spatial)
