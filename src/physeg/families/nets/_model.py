r"""A trained network as a physeg Model: preprocessing, inference and checkpoints.

:class:`Preprocessing` (stored in every checkpoint) maps an image to the network input: the
dtype range to [0, 1] (:func:`physeg._validate.to_float01`), then per channel
:math:`(x - \mu) / \sigma` with the training images' statistics (``norm="dataset"``) or each
image's own (``norm="image"``, which removes brightness / stain offsets between slides). Mask
values map to class indices 0..K-1 by their sorted distinct values, and predictions map back,
so a mask written with {0, 128, 255} is predicted with the same values.

Inference is the argmax of the logits; ``tta=True`` averages the class probabilities over the
8 flips / 90° turns of the (row, col) plane (8x the cost). A checkpoint is a ``torch.save``
dict with ``method``, ``arch``, ``config`` (the network class's full keywords),
``state_dict``, ``preprocessing``, ``train`` (training parameters) and ``info`` (history,
timing, parameter count), holding only tensors and plain Python data, so that
:func:`physeg.load` reads it with ``torch.load(weights_only=True)`` (a model file never runs
code) and hands it to :func:`load_network`.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..._validate import check_image, check_labels_like, to_float01
from ...io import atomic_write_bytes
from .._registry import Model, defaults_from
from ._arch import build_network
from ._config import PREDICT_PARAMS

__all__ = ["Preprocessing", "NetworkModel", "load_network", "predict_index",
           "keep_largest_object"]


@dataclasses.dataclass
class Preprocessing:
    """Image → network input and class index ↔ label value maps (stored in checkpoints).

    Attributes
    ----------
    ndim : int
        Spatial dimensions (2 or 3).
    in_channels : int
        Image channels (1 for grey).
    classes : list of int
        Label value of each class index 0..K-1.
    mean, std : list of float
        Per-channel statistics of the training images after :func:`to_float01`.
    """

    ndim: int
    in_channels: int
    classes: list[int]
    mean: list[float]
    std: list[float]
    intensity: str = "dtype range to [0, 1] (to_float01), then (x - mean) / std per channel"
    norm: str = "dataset"

    def image(self, image: Any, channel_axis: int | None = None, *,
              name: str = "image") -> np.ndarray:
        """Validated image → float32 array (C, *spatial), standardised."""
        arr = np.asarray(image)
        if (channel_axis is None and self.in_channels > 1 and arr.ndim == self.ndim + 1
                and arr.shape[-1] == self.in_channels):
            channel_axis = -1  # documented auto-detection: channels last
        arr = check_image(arr, channel_axis=channel_axis, allow_3d=self.ndim == 3, name=name)
        spatial_nd = arr.ndim - (channel_axis is not None)
        c = arr.shape[-1] if channel_axis is not None else 1
        if spatial_nd != self.ndim or c != self.in_channels:
            raise ValueError(
                f"{name} has spatial shape {arr.shape[:spatial_nd]} with {c} channel(s); this "
                f"model expects {self.ndim}-D images with {self.in_channels} channel(s). "
                + ("Pass channel_axis=-1 for colour images." if self.in_channels > 1 else
                   "Convert colour images to grey first.")
            )
        x = to_float01(arr)
        x = x[None] if channel_axis is None else np.moveaxis(x, -1, 0)
        if self.norm == "image":  # each image by its own per-channel statistics
            axes = tuple(range(1, x.ndim))
            mean = x.mean(axis=axes, keepdims=True)
            std = np.maximum(x.std(axis=axes, keepdims=True), 1e-6)
            return ((x - mean) / std).astype(np.float32)
        mean = np.asarray(self.mean, np.float32).reshape((-1,) + (1,) * self.ndim)
        std = np.asarray(self.std, np.float32).reshape((-1,) + (1,) * self.ndim)
        return ((x - mean) / std).astype(np.float32)

    def mask(self, mask: Any, spatial: tuple[int, ...], *, name: str = "mask") -> np.ndarray:
        """Mask → int64 class indices; values not in ``classes`` raise."""
        lab = check_labels_like(mask, spatial, name=name)
        table = np.asarray(self.classes)
        idx = np.searchsorted(table, lab)
        idx = np.clip(idx, 0, len(table) - 1)
        bad = table[idx] != lab
        if bad.any():
            raise ValueError(
                f"{name} holds label values {sorted(np.unique(lab[bad]).tolist())} that the "
                f"training masks did not contain (known classes: {self.classes})."
            )
        return idx.astype(np.int64)

    def labels(self, index: np.ndarray) -> np.ndarray:
        """Class indices → label values (uint8 when they fit, else int32)."""
        table = np.asarray(self.classes)
        dtype = np.uint8 if table.max() < 256 else np.int32
        return table.astype(dtype)[index]


def predict_index(net: Any, x: np.ndarray, device: Any = "cpu", *,
                  tta: bool = False) -> np.ndarray:
    """Run ``net`` on one preprocessed (C, *spatial) array; return class indices (argmax).

    ``tta=True`` averages the class probabilities over the 8 symmetries of the square in the
    last two axes (flips and 90° turns, each undone on the output): 8x the inference cost.
    """
    import torch

    was = net.training
    net.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(device)
    with torch.no_grad():
        if not tta:
            logits = net(xt)
            net.train(was)
            return logits.argmax(dim=1)[0].cpu().numpy()
        prob = None
        for flip in (False, True):
            xf = torch.flip(xt, dims=(-1,)) if flip else xt
            for k in range(4):
                out = torch.softmax(net(torch.rot90(xf, k, dims=(-2, -1))), dim=1)
                out = torch.rot90(out, -k, dims=(-2, -1))
                out = torch.flip(out, dims=(-1,)) if flip else out
                prob = out if prob is None else prob + out
    net.train(was)
    return prob.argmax(dim=1)[0].cpu().numpy()


def keep_largest_object(index: np.ndarray, background: int = 0) -> np.ndarray:
    """Keep the largest connected foreground object of a class-index map and fill its holes.

    The foreground is every pixel whose class is not ``background``; its connected
    components (face connectivity) are found and all but the largest become background;
    then background pixels enclosed by the object (holes) join it. Holes take the class of
    the nearest foreground pixel of the object (Euclidean distance transform), so a nucleus
    with a hole inside a cell is closed as nucleus. 2D or 3D; returns a new array.

    Examples
    --------
    >>> lab = np.zeros((7, 9), int); lab[1:6, 1:6] = 1; lab[2:5, 2:5] = 2; lab[3, 3] = 0
    >>> lab[3, 7] = 1                                  # a stray pixel away from the cell
    >>> out = keep_largest_object(lab)
    >>> int(out[3, 7]), int(out[3, 3]), int((out == 1).sum()), int((out == 2).sum())
    (0, 2, 16, 9)
    """
    from scipy import ndimage as ndi

    idx = np.asarray(index)
    fg = idx != background
    comp, n = ndi.label(fg)
    if n == 0:
        return idx.copy()
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    obj = ndi.binary_fill_holes(comp == int(np.argmax(sizes)))
    out = np.where(obj, idx, background)
    holes = obj & ~fg
    if holes.any():
        near = ndi.distance_transform_edt(holes, return_distances=False, return_indices=True)
        out[holes] = out[tuple(near[a][holes] for a in range(idx.ndim))]
    return out.astype(idx.dtype, copy=False)


class NetworkModel(Model):
    """A trained torch network plus its preprocessing; ``predict`` returns labels.

    ``save(path)`` writes a ``.pt`` checkpoint; :func:`physeg.load` reads it back.
    """

    def __init__(self, method: str, arch: str, config: dict[str, Any], net: Any,
                 preprocessing: Preprocessing, params: dict[str, Any] | None = None,
                 info: dict[str, Any] | None = None, device: str = "cpu"):
        super().__init__(method, params, info)
        self.arch = arch
        self.config = dict(config)
        self.net = net
        self.preprocessing = preprocessing
        self.device = device

    @defaults_from(PREDICT_PARAMS)
    def predict(self, image: np.ndarray, *, channel_axis: int | None = None, rng: Any = None,
                tta: bool, keep_largest: bool, **kwargs: Any) -> np.ndarray:
        """Segment one image; returns labels of its spatial shape (the training label values).

        Parameters
        ----------
        image : array_like
            Same kind as the training images (2D or 3D, same channels). For colour models
            a channels-last image is recognised without ``channel_axis``.
        channel_axis : int, optional
            Axis of the colour channels.
        rng : ignored
            Accepted for the common contract; inference is deterministic.
        tta : bool, default False
            Test-time augmentation: average the class probabilities over the 8 flips / 90°
            turns of the (row, col) plane. Smoother labels at 8x the inference time.
        keep_largest : bool, default False
            Single-object prior (post-processing): keep the largest connected component of
            the foreground (every class but the first, together) and fill its holes; other
            components become background, and a filled hole takes the class of the nearest
            pixel of the object (see :func:`keep_largest_object`). For images with one
            object of interest, such as a centred white blood cell.
        """
        if kwargs:
            raise TypeError(f"predict() got unexpected parameters {sorted(kwargs)}.")
        x = self.preprocessing.image(image, channel_axis)
        idx = predict_index(self.net, x, self.device, tta=bool(tta))
        if keep_largest:
            idx = keep_largest_object(idx)
        return self.preprocessing.labels(idx)

    def checkpoint(self) -> dict[str, Any]:
        """The dict written by :meth:`save` (tensors on CPU)."""
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        return {
            "physeg_model": self.format_version,
            "format": "physeg-torch",
            "method": self.method,
            "arch": self.arch,
            "config": _plain(self.config, "config"),
            "state_dict": state,
            "preprocessing": _plain(dataclasses.asdict(self.preprocessing), "preprocessing"),
            "train": _plain(self.params, "train"),
            "info": _plain(self.info, "info"),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (temporary file, then rename); return the path."""
        import torch

        buffer = io.BytesIO()
        torch.save(self.checkpoint(), buffer)
        return atomic_write_bytes(path, buffer.getvalue())

    def __repr__(self) -> str:
        return (f"NetworkModel(method={self.method!r}, arch={self.arch!r}, "
                f"classes={self.preprocessing.classes})")


def _plain(obj: Any, where: str) -> Any:
    """``obj`` with numpy scalars / arrays and paths made plain Python; other objects refused.

    A checkpoint holds only what ``torch.load(weights_only=True)`` reads back (tensors, None,
    bool, int, float, str, list, tuple, dict), so loading it never needs to run code.
    """
    if isinstance(obj, (np.ndarray, np.generic)):  # before float: np.float64 is a float
        return obj.tolist()
    for kind in (bool, int, float, str):  # subclasses (enums, np.float64) as the base type
        if isinstance(obj, kind):
            return kind(obj)
    if obj is None:
        return None
    if isinstance(obj, dict):
        return {str(k): _plain(v, f"{where}/{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"checkpoint entry {where} is a {type(obj).__name__}; a model file holds "
                    "only numbers, strings, lists, tuples and dicts (and the weights).")


def load_network(data: dict[str, Any], path: Any = None) -> NetworkModel:
    """Rebuild a :class:`NetworkModel` from a checkpoint dict (``physeg.load`` calls this).

    Raises ``ValueError`` naming what is wrong when the dict is not a network checkpoint:
    a missing entry, a config the architecture does not take, or weights that do not fit.
    """
    import torch

    for key in ("method", "arch", "config", "state_dict", "preprocessing"):
        if key not in data:
            raise ValueError(f"{path or 'checkpoint'} is not a physeg network checkpoint "
                             f"(missing {key!r}).")
    for key in ("config", "state_dict", "preprocessing"):
        if not isinstance(data[key], dict):
            raise ValueError(f"its {key!r} entry is a {type(data[key]).__name__}, not a dict.")
    if not all(isinstance(v, torch.Tensor) for v in data["state_dict"].values()):
        raise ValueError("its 'state_dict' holds entries that are not tensors.")
    try:
        net = build_network(data["arch"], **data["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"its config does not build a {data['arch']!r} network: {exc}") from None
    try:
        net.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
        raise ValueError(f"its weights do not fit the {data['arch']!r} network of its config: "
                         f"{detail[:300]}") from None
    net.eval()
    try:
        pre = Preprocessing(**data["preprocessing"])
    except TypeError as exc:
        raise ValueError(f"its 'preprocessing' entry is not valid: {exc}") from None
    return NetworkModel(data["method"], data["arch"], data["config"], net, pre,
                        data.get("train", {}), data.get("info", {}))
