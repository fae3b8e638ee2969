"""Plain U-Net baseline, trained by the same trainer as MSNet (:mod:`physeg.families.nets.train`).

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015, :arXiv:`1505.04597`.

Architecture: J levels; each encoder level is a DoubleConv (3×3 conv → ReLU, twice), then
max-pooling by the level's stride; the decoder upsamples by a transposed convolution,
concatenates the encoder's skip features and applies a DoubleConv; a 1×1 convolution gives
the K class logits (softmax in the loss). 2D and 3D (anisotropic strides allowed).

Choices made where the papers left room
---------------------------------------
* Widths default to (16, 32, 64, 128, 256) like MSNet's default, but a DoubleConv per level
  costs more parameters than MSNet's FEM, so the benchmark picks U-Net widths that give a
  parameter count close to the MSNet it is compared with (see ``benchmarks/msnet_wbc.py``).
* No normalisation and no dropout by default (as the PDE-prior paper's U-Net and MSNet), so
  that the two networks differ only in structure; ``norm="batch"``/``"group"`` is available.
* Same padding policy as MSNet: reflect-pad to a multiple of the stride product, crop back.
* DeepLabV3+ (optional in the issue) is not provided.
"""

from __future__ import annotations

from typing import Any, Sequence

from .._registry import Method, Param, register
from ._config import PREDICT_PARAMS, TRAIN_PARAMS

__all__ = ["build_unet", "fit_unet", "load_unet", "ARCH_PARAMS"]

ARCH_PARAMS: tuple[Param, ...] = (
    Param("widths", "str", "8,16,32,64,128",
          "feature channels per level (J = their count); wider = more capacity, slower "
          "(default: the shipped WBC recipe's)"),
    Param("strides", "str", None, "per-level strides, e.g. '1,2,2;2;2' (default 2 everywhere)"),
    Param("norm", "str", "none", "normalisation after each conv",
          choices=("none", "batch", "group")),
)


def build_unet(in_channels: int = 1, num_classes: int = 2, *, ndim: int = 2, **config: Any):
    """Build a U-Net torch module (needs torch).

    Parameters
    ----------
    in_channels : int
        Image channels.
    num_classes : int
        K output classes.
    ndim : {2, 3}
        Spatial dimension.
    **config
        ``widths`` (sequence; J = its length), ``strides`` (J−1 entries of 1/2 per axis),
        ``norm`` ("none", "batch", "group").

    Returns
    -------
    torch.nn.Module
        ``forward(x)`` maps (B, in_channels, *spatial) to logits (B, K, *spatial).
    """
    from ._unet_torch import UNet

    return UNet(in_channels, num_classes, ndim=ndim, **config)


def fit_unet(images: Sequence[Any], masks: Sequence[Any] | None, *, progress: Any = None,
              **params: Any):
    """Train the U-Net (``physeg.fit("unet", images, masks, **params)``); see ``fit_msnet``."""
    from ._config import arch_config, progress_callback, split_fit_params
    from .train import fit_network

    report, params = progress_callback(progress, params)
    arch, train, data = split_fit_params(params, [p.name for p in ARCH_PARAMS])
    defaults = {p.name: p.default for p in ARCH_PARAMS}
    return fit_network("unet", "unet", images, masks, report=report,
                       arch_config=arch_config({**defaults, **arch}), **data, **train)


def load_unet(data: dict[str, Any], path: Any = None):
    """Rebuild a trained U-Net from a checkpoint dict (used by ``physeg.load``)."""
    from ._model import load_network

    return load_network(data, path)


register(
    Method(
        name="unet",
        func=None,
        params=PREDICT_PARAMS,
        summary="a plain U-Net trained on labelled images (the networks' baseline, same "
                "trainer as MSNet); train it with physeg fit first",
        fit_func=fit_unet,
        load_func=load_unet,
        supports_3d=True,
        supports_multichannel=True,
        needs_labels=True,
        requires=("torch",),
        fit_params=ARCH_PARAMS + TRAIN_PARAMS,
    )
)
