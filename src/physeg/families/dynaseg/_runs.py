"""The torch side of DynaSeg's recipe: device, threads, tensors, networks, training runs.

Private module, imported only when :func:`physeg.families.dynaseg.segment_dynaseg` runs
(torch is never imported by ``import physeg``). Each run builds a freshly initialised
network inside ``torch.random.fork_rng`` seeded with its own seed (the global torch state
is untouched), trains it on the one image (:func:`~physeg.families.dynaseg._net.train_per_image`)
and reads out its cluster map at the input size: the argmax of the response, upsampled
bilinearly (``final="upsample"``) or recomputed by one forward pass of the trained, fully
convolutional network on the full-resolution image (``final="full"``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from ._net import DynaSegCNN, train_per_image

__all__ = ["torch_device", "torch_threads", "image_tensors", "scribble_tensor",
           "build_network", "train_runs"]


def torch_device(device: str) -> torch.device:
    """The torch device; ``"auto"`` is CUDA when torch sees a GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no CUDA GPU; use "
                         "device='cpu' or 'auto'.")
    return torch.device(device)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (``None``: unchanged), then restore."""
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)


def image_tensors(x01: np.ndarray, train_shape: tuple[int, int],
                  dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, h, w) training tensor (resized, antialiased) and the (1, C, rows, cols) one."""
    x_full = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x01, -1, 0)))[None].to(dev)
    if train_shape == x01.shape[:2]:
        return x_full, x_full
    x_train = F.interpolate(x_full, size=train_shape, mode="bilinear", align_corners=False,
                            antialias=True)
    return x_train, x_full


def scribble_tensor(scr: np.ndarray, train_shape: tuple[int, int], dev: torch.device) -> Any:
    """(1, h, w) long tensor of the scribble at the training size (nearest neighbour)."""
    st = torch.from_numpy(scr)[None, None].float()
    if train_shape != scr.shape:
        st = F.interpolate(st, size=train_shape, mode="nearest")
    return st[:, 0].long().to(dev)


def build_network(backbone: str, in_channels: int, cfg: dict[str, Any],
                   weights: str | None) -> Any:
    """A freshly initialised network (from torch's current random state)."""
    if backbone == "cnn":
        return DynaSegCNN(in_channels, cfg["channels"], cfg["channels"], cfg["n_conv"])
    from ._resnet import ResNet18FPN, load_resnet18_state_dict

    model = ResNet18FPN(q=cfg["channels"])
    if weights is not None:
        load_resnet18_state_dict(model, weights)
    return model


def train_runs(x_train: Any, x_full: Any, seeds: list[int], dev: torch.device, *, backbone: str,
                weights: str | None, cfg: dict[str, Any], train: dict[str, Any],
                callback: Any) -> tuple[list[np.ndarray], Any, Any]:
    """Train one network per seed; return every run's cluster map at the input size.

    Returns the cluster maps (rows, cols), the first run's
    :class:`~physeg.families.dynaseg._net.TrainResult` and its response at the input size.
    """
    out_shape = tuple(x_full.shape[-2:])
    cuda_ids = ([dev.index if dev.index is not None else torch.cuda.current_device()]
                if dev.type == "cuda" else [])
    cluster_maps = []
    for run, seed in enumerate(seeds):
        with torch.random.fork_rng(devices=cuda_ids):
            torch.manual_seed(seed)
            model = build_network(backbone, x_train.shape[1], cfg, weights)
        model = model.to(dev)
        result = train_per_image(model, x_train, callback=callback if run == 0 else None,
                                 **train)
        response = result.response
        if x_train.shape[-2:] != x_full.shape[-2:] and cfg["final"] == "full":
            with torch.no_grad():
                response = model(x_full)
        if tuple(response.shape[-2:]) != out_shape:
            response = F.interpolate(response, size=out_shape, mode="bilinear",
                                     align_corners=False)
        cluster_maps.append(response.argmax(dim=1)[0].cpu().numpy())
        if run == 0:
            first, first_response = result, response
        del model, result, response
    return cluster_maps, first, first_response
