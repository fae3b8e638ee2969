r"""One trainer for every supervised physeg network (MSNet, U-Net, PDE-regularised U-Net).

torch is imported inside the functions, so this module imports without it.

Pipeline
--------
1. **Data**: :func:`load_folder` pairs ``images/<id>.*`` with ``masks/<id>.png``;
   :func:`split_indices` draws a fixed-seed split with ``S`` training images (and optional
   validation / test parts).
2. **Preprocessing** (:class:`Preprocessing`, stored in every checkpoint): each image is mapped
   to [0, 1] by its dtype range (:func:`physeg._validate.to_float01`: uint8 / 255, uint16 /
   65535; float images already in [0, 1] kept, other float ranges min-max scaled per image),
   then standardised per channel with the mean and standard deviation of the *training* images
   (``input_norm="dataset"``, the default) or of *each image itself* (``input_norm="image"``,
   stored in the checkpoint as ``Preprocessing.norm``): per-image statistics remove the
   brightness / stain offset between slides, which was the main failure of the WBC model
   trained with dataset statistics (yellow-stained backgrounds segmented as cytoplasm).
   Mask values are mapped to class indices 0..K-1 by their sorted distinct values in the
   training masks (``classes``); predictions are mapped back, so a mask written with values
   {0, 128, 255} is predicted with the same values.
3. **Batches**: ``batch_size`` images drawn with replacement by the numpy generator, each cut
   to a fixed patch: a random crop where the image is larger, zero padding (the training mean)
   where it is smaller. Padded pixels carry ``valid = 0`` and are left out of the loss. The
   default patch is the largest training size per axis rounded up to the network's divisor
   (the product of its strides), capped at 256 (2D) / 96 (3D) per axis; WBC images (≤ 120²)
   thus train on whole images padded to 128².
4. **Augmentation** (``augment=True``): a flip along each spatial axis (p = 1/2 each), a
   rotation by k·90° in the (row, col) plane when the patch is square there, and an intensity
   change per image and channel ``x ← a x + b`` with ``a ∈ [1 − s, 1 + s]``,
   ``b ∈ [−s, s]`` (standardised units, ``s = intensity``); optionally (``colour > 0``) a
   random channel mixing ``x ← M x`` with ``M = I + colour·N(0, 1)`` (3×3 for RGB), a cheap
   linear model of stain changes; and (``zoom > 0``) a random isotropic rescaling of image
   (linear) and mask (nearest) by a factor in ``[1/(1+zoom), 1+zoom]`` *before* the crop
   (cell sizes vary by type). With ``colour = zoom = 0`` the generator draws exactly what it
   drew before these options existed, so older runs reproduce. Optionally (``rotate``,
   ``elastic``) each patch is then resampled through a rotation by a uniform random angle
   and a smooth random elastic displacement (Gaussian-filtered noise, ~8 px correlation, as
   in the U-Net paper): linear for the image, nearest for the mask, and pixels that come
   from outside the patch are marked invalid. Off by default (about 20 ms of CPU per 128²
   RGB patch, +20 % per MSNet iteration at batch 4).
5. **Optimisation**: Adam with ``lr`` and the MSNet paper's schedule, StepLR (×``gamma`` =
   0.8 every ``step_size`` = 200 *iterations*), stepped per iteration.
6. **Loss**: soft multi-class Dice (the paper's loss) or Dice + CE
   (:mod:`physeg.families.nets.losses`), plus any extra terms: a network may define
   ``loss_terms(logits, inputs) -> dict[str, Tensor]`` (already weighted) and a caller may pass
   ``extra_terms``; every term is added to the loss and logged in the history. This is how the
   PDE-regularised U-Net adds its reaction–diffusion and phase-field penalties.
7. **Validation and early stopping**: every ``val_every`` iterations the mean foreground Dice
   (hard labels, per image, classes 1..K-1) is computed on the validation images; the best
   weights are kept and restored at the end; training stops after ``patience`` validations
   without improvement, after ``iterations``, or after ``max_time`` seconds (the stopping
   reason is recorded). ``max_cpu_time`` bounds the process's CPU seconds instead of wall
   seconds, a budget that does not depend on how loaded a shared machine is. Without
   validation images the last weights are kept.
8. **Inference**: ``predict(image, tta=True)`` averages the class probabilities over the
   8 flips / 90° turns (test-time augmentation, 8x the cost); the default is a single pass.
9. **Checkpoint**: ``model.save("x.pt")`` writes a dict with ``method``, ``arch``,
   ``config``, ``state_dict``, ``preprocessing``, ``train`` (the training parameters) and
   ``info`` (history, timing, parameter count); :func:`physeg.load` rebuilds the network.

Determinism: the numpy generator from ``rng`` draws the split, the batches, the augmentation
and the torch seed used to initialise the weights (inside ``torch.random.fork_rng``, so the
global torch state is left alone). On CPU the same seed gives the same weights and labels; a
``max_time`` stop depends on the machine's speed and is then the only non-deterministic part.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..._validate import as_rng, check_image, check_labels_like, to_float01
from .._registry import Model, Param

__all__ = [
    "TrainConfig",
    "Preprocessing",
    "NetworkModel",
    "TRAIN_PARAMS",
    "load_folder",
    "split_indices",
    "train_network",
    "fit_network",
    "load_network",
    "register_arch",
    "count_parameters",
    "keep_largest_object",
    "PREDICT_PARAMS",
]

_ARCHS: dict[str, str] = {
    "msnet": "physeg.families.nets._msnet_torch:MSNet",
    "unet": "physeg.families.nets._unet_torch:UNet",
}

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")


def register_arch(name: str, target: str) -> None:
    """Make a network class buildable by name: ``target`` is ``"physeg.families.nets.module:Class"``.

    Only classes inside ``physeg.families.nets`` are accepted (checkpoints name their architecture and
    must not import arbitrary code).
    """
    if not target.startswith("physeg.families.nets.") or ":" not in target:
        raise ValueError(
            f"architecture target must look like 'physeg.families.nets.<module>:<Class>'; got {target!r}."
        )
    _ARCHS[name] = target


def build_network(arch: str, **config: Any):
    """Instantiate the torch module registered as ``arch`` with keyword ``config``."""
    if arch not in _ARCHS:
        raise ValueError(f"unknown network architecture {arch!r}; known: {sorted(_ARCHS)}.")
    mod, cls = _ARCHS[arch].split(":")
    return getattr(importlib.import_module(mod), cls)(**config)


def full_config(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` completed with the network class's keyword defaults (stored in checkpoints,
    so that a later change of a default cannot change how an old checkpoint is rebuilt)."""
    import inspect

    mod, cls = _ARCHS[arch].split(":")
    sig = inspect.signature(getattr(importlib.import_module(mod), cls).__init__)
    out = {k: p.default for k, p in sig.parameters.items()
           if k != "self" and p.default is not inspect.Parameter.empty
           and p.kind is not inspect.Parameter.VAR_KEYWORD}
    out.update(config)
    return out


def count_parameters(net: Any) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))


# ----------------------------------------------------------------------------------------------
# data


def _read(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def load_folder(
    images: str | os.PathLike, masks: str | os.PathLike | None = None
) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Read a folder dataset: images and masks paired by file stem.

    Parameters
    ----------
    images : path
        Folder of images (png, jpg, bmp, tif, npy), or a dataset root holding ``images/`` and
        ``masks/`` (the ``../shared/data`` layout).
    masks : path, optional
        Folder of masks named like the images (``<id>.png`` etc.). Required unless ``images``
        is a dataset root. BSDS-style ``<id>_<k>.png`` extra annotators are not paired.

    Returns
    -------
    ids : list of str
        Sorted file stems that have both an image and a mask.
    images, masks : lists of numpy arrays
        As stored (no conversion).

    Raises
    ------
    FileNotFoundError
        Missing folder, or no image has a matching mask.
    """
    root = Path(images)
    if masks is None:
        if (root / "images").is_dir() and (root / "masks").is_dir():
            root, mroot = root / "images", root / "masks"
        else:
            raise FileNotFoundError(
                f"{str(root)!r} has no images/ and masks/ subfolders; pass the mask folder "
                "explicitly: load_folder(images_dir, masks_dir)."
            )
    else:
        mroot = Path(masks)
    for p in (root, mroot):
        if not p.is_dir():
            raise FileNotFoundError(f"folder {str(p)!r} does not exist.")
    img_files = {p.stem: p for p in sorted(root.iterdir()) if p.suffix.lower() in _IMAGE_EXT}
    mask_files = {p.stem: p for p in sorted(mroot.iterdir()) if p.suffix.lower() in _IMAGE_EXT}
    ids = sorted(set(img_files) & set(mask_files))
    if not ids:
        raise FileNotFoundError(
            f"no image in {str(root)!r} has a mask of the same name in {str(mroot)!r} "
            f"({len(img_files)} images, {len(mask_files)} masks found)."
        )
    return ids, [_read(img_files[i]) for i in ids], [_read(mask_files[i]) for i in ids]


def split_indices(
    n: int, n_train: int, *, n_val: int = 0, n_test: int | None = None, rng: Any = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed-seed random split of ``n`` items into train / validation / test indices.

    Parameters
    ----------
    n : int
        Number of items.
    n_train : int
        Training items S (1..n - n_val).
    n_val : int, default 0
        Validation items, drawn after the training ones.
    n_test : int, optional
        Test items; ``None`` means every remaining item.
    rng : None, int or numpy.random.Generator
        The permutation's seed; the same seed gives the same split, and a larger ``n_train``
        with the same seed extends the same permutation's prefix.

    Returns
    -------
    train, val, test : numpy arrays of int, each sorted
    """
    if not 1 <= n_train <= n - n_val:
        raise ValueError(
            f"n_train must be in 1..{n - n_val} (n={n}, n_val={n_val}); got {n_train}."
        )
    if n_val < 0:
        raise ValueError(f"n_val must be >= 0; got {n_val}.")
    rest = n - n_train - n_val
    if n_test is None:
        n_test = rest
    if not 0 <= n_test <= rest:
        raise ValueError(f"n_test must be in 0..{rest}; got {n_test}.")
    perm = as_rng(rng).permutation(n)
    tr = np.sort(perm[:n_train])
    va = np.sort(perm[n_train:n_train + n_val])
    te = np.sort(perm[n_train + n_val:n_train + n_val + n_test])
    return tr, va, te


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


@dataclasses.dataclass
class TrainConfig:
    """Training parameters (all keyword; see :data:`TRAIN_PARAMS` for the ranges)."""

    iterations: int = 2000
    batch_size: int = 4
    lr: float = 1e-3
    step_size: int = 200
    gamma: float = 0.8
    loss: str = "dice"
    ce_weight: float = 1.0
    val_fraction: float = 0.2
    val_every: int = 50
    patience: int = 10
    patch: int | None = None
    augment: bool = True
    intensity: float = 0.1
    device: str = "cpu"
    threads: int = 2
    max_time: float | None = None
    max_cpu_time: float | None = None
    progress: bool = False
    clip_grad: float | None = None
    colour: float = 0.0
    zoom: float = 0.0
    input_norm: str = "dataset"
    ema: float = 0.0
    rotate: bool = False
    elastic: float = 0.0

    def check(self) -> "TrainConfig":
        for p in TRAIN_PARAMS:
            if p.name in ("rng", "channel_axis", "spatial_dims"):
                continue
            setattr(self, p.name, p.convert(getattr(self, p.name)))
        return self


TRAIN_PARAMS: tuple[Param, ...] = (
    Param("iterations", "int", 2000,
          "training iterations (mini-batches); more = longer, better fit", low=1, high=1_000_000),
    Param("batch_size", "int", 4, "images per mini-batch", low=1, high=1024),
    Param("lr", "float", 1e-3, "Adam initial learning rate", low=1e-7, high=1.0),
    Param("step_size", "int", 200, "StepLR: iterations between learning-rate decays (paper 200)",
          low=1, high=1_000_000),
    Param("gamma", "float", 0.8, "StepLR decay factor (paper 0.8)", low=0.01, high=1.0),
    Param("loss", "str", "dice", "training loss", choices=("dice", "dice_ce")),
    Param("ce_weight", "float", 1.0, "weight of cross-entropy in dice_ce", low=0.0, high=100.0),
    Param("val_fraction", "float", 0.2,
          "fraction of the training images held out for validation/early stopping (0 = none)",
          low=0.0, high=0.9),
    Param("val_every", "int", 50, "iterations between validations", low=1, high=1_000_000),
    Param("patience", "int", 10, "validations without improvement before stopping",
          low=1, high=1_000_000),
    Param("patch", "int", None, "training patch side (auto: largest image, rounded up)",
          low=4, high=4096),
    Param("augment", "bool", True, "random flips, 90-degree rotations, intensity changes"),
    Param("intensity", "float", 0.1, "intensity augmentation strength s (x <- a x + b)",
          low=0.0, high=1.0),
    Param("device", "str", "cpu", "torch device", choices=("cpu", "cuda", "auto")),
    Param("threads", "int", 2, "CPU threads for torch (at most)", low=1, high=256),
    Param("max_time", "float", None, "stop training after this many seconds", low=1.0),
    Param("max_cpu_time", "float", None,
          "stop training after this many CPU seconds of the process (all threads; a "
          "machine-load-independent budget)", low=1.0),
    Param("progress", "bool", False, "show a progress bar"),
    Param("clip_grad", "float", None, "clip the gradient norm to this value (None = no clip)",
          low=1e-6),
    Param("colour", "float", 0.0,
          "colour augmentation: random channel mixing x <- M x, M = I + N(0, colour^2) per "
          "entry (0 = off); simulates stain changes between slides", low=0.0, high=1.0),
    Param("zoom", "float", 0.0,
          "scale augmentation: random zoom by a factor in [1/(1+zoom), 1+zoom] before the "
          "crop (0 = off)", low=0.0, high=1.0),
    Param("input_norm", "str", "dataset",
          "input standardisation: 'dataset' (training mean/std per channel) or 'image' (each "
          "image by its own mean/std per channel; removes stain/brightness offsets)",
          choices=("dataset", "image")),
    Param("ema", "float", 0.0,
          "exponential moving average of the weights: after every step w_ema <- d w_ema + "
          "(1 - d) w with this decay d; validation and the returned model use w_ema (0 = off; "
          "0.99-0.999 averages over the last 100-1000 iterations)", low=0.0, high=0.9999),
    Param("rotate", "bool", False,
          "augmentation: rotate each training patch by a uniform random angle in the (row, "
          "col) plane (linear for the image, nearest for the mask; corners that come from "
          "outside the patch are left out of the loss)"),
    Param("elastic", "float", 0.0,
          "augmentation: smooth random elastic deformation whose displacement has this "
          "standard deviation in pixels, correlated over ~8 px (Gaussian-filtered noise, "
          "as in the U-Net paper); 0 = off, 2-6 px typical for cells", low=0.0, high=50.0),
    Param("rng", "int", 0, "seed for split, batches, augmentation and weight init", low=0),
    Param("channel_axis", "int", None, "axis of colour channels in the images (-1 for RGB)"),
    Param("spatial_dims", "int", None, "2 or 3 spatial axes (auto from the images)", low=2,
          high=3),
)


#: Parameters of ``NetworkModel.predict`` (``physeg segment --model ckpt.pt --param tta=true``).
PREDICT_PARAMS: tuple[Param, ...] = (
    Param("tta", "bool", False,
          "test-time augmentation: average the class probabilities over the 8 flips / 90-degree "
          "turns (8x the inference time; +0.003 to +0.006 mIoU in our WBC runs)"),
    Param("keep_largest", "bool", False,
          "single-object post-processing: keep the largest connected foreground object and "
          "fill its holes (for images of one centred object, e.g. a white blood cell)"),
)


# ----------------------------------------------------------------------------------------------
# batches and augmentation (numpy, vectorised over pixels; loops only over batch items)


def _auto_patch(shapes: Sequence[tuple[int, ...]], div: Sequence[int], ndim: int,
                patch: int | None) -> tuple[int, ...]:
    cap = 256 if ndim == 2 else 96
    if patch is not None:
        return tuple(int(-(-patch // d) * d) for d in div)
    big = np.max(np.asarray(shapes), axis=0)
    return tuple(int(-(-min(int(b), cap) // d) * d) for b, d in zip(big, div, strict=True))


def _cut(x: np.ndarray, y: np.ndarray, patch: tuple[int, ...], gen: np.random.Generator):
    """Random crop / zero pad of one (C, *spatial) image and its mask to ``patch``."""
    spatial = x.shape[1:]
    xo = np.zeros((x.shape[0],) + patch, np.float32)
    yo = np.zeros(patch, np.int64)
    vo = np.zeros(patch, np.float32)
    src, dst = [], []
    for n, p in zip(spatial, patch, strict=True):
        if n >= p:
            s = int(gen.integers(0, n - p + 1))
            src.append(slice(s, s + p))
            dst.append(slice(0, p))
        else:
            o = int(gen.integers(0, p - n + 1))
            src.append(slice(0, n))
            dst.append(slice(o, o + n))
    xo[(slice(None),) + tuple(dst)] = x[(slice(None),) + tuple(src)]
    yo[tuple(dst)] = y[tuple(src)]
    vo[tuple(dst)] = 1.0
    return xo, yo, vo


def _zoom(x, y, gen: np.random.Generator, zoom: float):
    """Random isotropic rescaling of one (C, *spatial) image (linear) and its mask (nearest)."""
    from scipy import ndimage as ndi

    f = float(np.exp(gen.uniform(-np.log1p(zoom), np.log1p(zoom))))
    shape = tuple(max(1, int(round(n * f))) for n in y.shape)
    fac = [m / n for m, n in zip(shape, y.shape, strict=True)]
    xz = np.stack([ndi.zoom(c, fac, order=1, mode="nearest", grid_mode=True) for c in x])
    yz = ndi.zoom(y, fac, order=0, mode="nearest", grid_mode=True)
    return xz.astype(np.float32), yz.astype(y.dtype)


def _augment(x, y, v, gen: np.random.Generator, intensity: float, colour: float = 0.0):
    """Flips on every spatial axis, k·90° turn in the last two axes, a x + b per channel,
    then (``colour > 0``) a random channel mixing ``x <- M x`` with ``M = I + colour * N``."""
    ndim = y.ndim
    for ax in range(ndim):
        if gen.random() < 0.5:
            x, y, v = np.flip(x, ax + 1), np.flip(y, ax), np.flip(v, ax)
    if y.shape[-1] == y.shape[-2]:
        k = int(gen.integers(0, 4))
        x = np.rot90(x, k, axes=(-2, -1))
        y = np.rot90(y, k, axes=(-2, -1))
        v = np.rot90(v, k, axes=(-2, -1))
    if intensity > 0:
        c = x.shape[0]
        a = gen.uniform(1 - intensity, 1 + intensity, size=(c,) + (1,) * ndim)
        b = gen.uniform(-intensity, intensity, size=(c,) + (1,) * ndim)
        x = (a * x + b).astype(np.float32)
    if colour > 0 and x.shape[0] > 1:
        c = x.shape[0]
        mix = np.eye(c) + colour * gen.standard_normal((c, c))
        x = np.tensordot(mix, x, axes=(1, 0)).astype(np.float32)
    return np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(v)


def _warp(x, y, v, gen: np.random.Generator, rotate: bool, elastic: float,
          smooth: float = 8.0):
    """Resample a (C, *spatial) patch, its mask and valid map through one random map.

    The map is a rotation by a uniform angle about the patch centre in the last two axes
    (``rotate``) composed with a displacement field ``d = elastic * g / std(g)``, ``g`` white
    noise filtered by a Gaussian of ``smooth`` px per axis. Image: linear interpolation,
    zero (= the training mean) outside; mask and valid map: nearest, and pixels mapped from
    outside the patch get ``valid = 0``, so they do not enter the loss.
    """
    from scipy import ndimage as ndi

    shape = y.shape
    ndim = y.ndim
    grid = np.indices(shape, dtype=np.float64)
    coords = grid.copy()
    if rotate and ndim >= 2:
        theta = gen.uniform(0.0, 2.0 * np.pi)
        c, s = np.cos(theta), np.sin(theta)
        r0, c0 = (shape[-2] - 1) / 2.0, (shape[-1] - 1) / 2.0
        dr, dc = grid[-2] - r0, grid[-1] - c0
        coords[-2] = r0 + c * dr - s * dc
        coords[-1] = c0 + s * dr + c * dc
    if elastic > 0:
        for ax in range(ndim):
            g = ndi.gaussian_filter(gen.standard_normal(shape), smooth, mode="wrap")
            coords[ax] += elastic * g / max(float(g.std()), 1e-12)
    xw = np.stack([ndi.map_coordinates(ch, coords, order=1, mode="constant", cval=0.0)
                   for ch in x]).astype(np.float32)
    yw = ndi.map_coordinates(y, coords, order=0, mode="constant", cval=0).astype(y.dtype)
    vw = ndi.map_coordinates(v.astype(np.float32), coords, order=0, mode="constant",
                             cval=0.0).astype(v.dtype)
    return xw, yw, vw


def _batch(xs, ys, patch, cfg: TrainConfig, gen: np.random.Generator):
    idx = gen.integers(0, len(xs), size=cfg.batch_size)
    bx, by, bv = [], [], []
    for i in idx:
        x, y = xs[i], ys[i]
        if cfg.augment and cfg.zoom > 0:
            x, y = _zoom(x, y, gen, cfg.zoom)
        x, y, v = _cut(x, y, patch, gen)
        if cfg.augment:
            x, y, v = _augment(x, y, v, gen, cfg.intensity, cfg.colour)
            if cfg.rotate or cfg.elastic > 0:
                x, y, v = _warp(x, y, v, gen, cfg.rotate, cfg.elastic)
        bx.append(x)
        by.append(y)
        bv.append(v)
    return np.stack(bx), np.stack(by), np.stack(bv)


def _foreground_dice(pred: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean hard Dice over classes 1..K-1 (classes absent from both count as 1)."""
    scores = []
    for c in range(1, k):
        p, t = pred == c, truth == c
        den = p.sum() + t.sum()
        scores.append(1.0 if den == 0 else 2.0 * np.logical_and(p, t).sum() / den)
    return float(np.mean(scores))


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no CUDA GPU; use 'cpu'.")
    return torch.device(name)


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


def train_network(
    net: Any,
    xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    *,
    config: TrainConfig | None = None,
    val_xs: Sequence[np.ndarray] = (),
    val_ys: Sequence[np.ndarray] = (),
    num_classes: int | None = None,
    rng: Any = 0,
    extra_terms: dict[str, Callable[..., Any]] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``net`` in place on preprocessed arrays; return the history.

    Parameters
    ----------
    net : torch.nn.Module
        Maps (B, C, *spatial) to logits (B, K, *spatial). May define
        ``loss_terms(logits, inputs) -> dict`` of extra (weighted) loss terms.
    xs, ys : sequences of arrays
        Standardised images (C, *spatial) float32 and class indices (*spatial) int64.
    config : TrainConfig
        Training parameters (defaults if None).
    val_xs, val_ys : sequences, optional
        Validation data for model selection and early stopping.
    num_classes : int, optional
        K (default: ``max label + 1`` over ``ys``).
    rng : None, int or numpy.random.Generator
        Draws batches and augmentation.
    extra_terms : dict name -> callable(logits, inputs, target, valid) -> Tensor, optional
        Additional weighted loss terms (logged under their names).
    log : callable(str), optional
        Receives a line at every validation.

    Returns
    -------
    dict
        ``loss`` (per iteration), ``terms`` (per term, per iteration), ``val`` (list of
        (iteration, mean foreground Dice)), ``best_iteration``, ``iterations_run``,
        ``stop_reason`` ("iterations" | "early_stopping" | "time_limit"), ``train_seconds``.
    """
    import torch

    from .losses import dice_ce_loss, soft_dice_loss

    cfg = (config or TrainConfig()).check()
    gen = as_rng(rng)
    dev = _device(cfg.device)
    k = int(num_classes if num_classes is not None else max(int(y.max()) for y in ys) + 1)
    ndim = ys[0].ndim
    div = getattr(net, "divisor", (1,) * ndim)
    patch = _auto_patch([y.shape for y in ys], div, ndim, cfg.patch)
    net.to(dev).train()
    # NHWC is the layout oneDNN's CPU convolutions run fastest in: 1.2-1.3x per MSNet
    # iteration (batch 4 x 128^2, one thread); the weights are the same numbers either way
    fast_layout = dev.type == "cpu" and ndim == 2
    if fast_layout:
        net.to(memory_format=torch.channels_last)
    ema_net = None
    if cfg.ema > 0:
        ema_net = copy.deepcopy(net)
        ema_net.requires_grad_(False)
        ema_params, live_params = list(ema_net.parameters()), list(net.parameters())
    eval_net = ema_net if ema_net is not None else net
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    hist: dict[str, Any] = {"loss": [], "terms": {}, "val": [], "lr": [], "patch": list(patch)}
    best, best_state, best_it, bad = -np.inf, None, 0, 0
    stop = "iterations"
    bar = None
    if cfg.progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("training", total=cfg.iterations)
    t0 = time.perf_counter()
    c0 = time.process_time()
    it = 0
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(cfg.threads, old_threads)))
    # denormal floats (tiny softmax tails and their gradients) take a slow path on x86;
    # flushing them to zero changes values below 1e-38 only and saves ~10 % per iteration
    flushed = dev.type == "cpu" and torch.set_flush_denormal(True)
    try:
        for it in range(1, cfg.iterations + 1):
            bx, by, bv = _batch(xs, ys, patch, cfg, gen)
            x = torch.from_numpy(bx).to(dev)
            if fast_layout:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(by).to(dev)
            v = torch.from_numpy(bv).to(dev)
            logits = net(x)
            if cfg.loss == "dice":
                loss = soft_dice_loss(logits, y, valid=v)
            else:
                loss = dice_ce_loss(logits, y, valid=v, ce_weight=cfg.ce_weight)
            terms: dict[str, Any] = {}
            if hasattr(net, "loss_terms"):
                terms.update(net.loss_terms(logits, x))
            for name, fn in (extra_terms or {}).items():
                terms[name] = fn(logits, x, y, v)
            for name, val in terms.items():
                loss = loss + val
                hist["terms"].setdefault(name, []).append(float(val.detach()))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged at iteration {it} (loss {float(loss.detach())}); lower lr."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
            opt.step()
            sched.step()
            if ema_net is not None:
                # warm-up (1 + t) / (10 + t) keeps the average from remembering the random
                # initial weights for ~1 / (1 - ema) iterations
                decay = min(cfg.ema, (1.0 + it) / (10.0 + it))
                with torch.no_grad():
                    torch._foreach_lerp_(ema_params, live_params, 1.0 - decay)
                    for b_ema, b in zip(ema_net.buffers(), net.buffers(), strict=True):
                        b_ema.copy_(b)
            hist["loss"].append(float(loss.detach()))
            hist["lr"].append(float(opt.param_groups[0]["lr"]))
            if bar is not None:
                bar.update(task, advance=1, description=f"loss {hist['loss'][-1]:.4f}")
            elapsed = time.perf_counter() - t0
            over = ((cfg.max_time is not None and elapsed > cfg.max_time)
                    or (cfg.max_cpu_time is not None
                        and time.process_time() - c0 > cfg.max_cpu_time))
            last = it == cfg.iterations or over
            if val_xs and (it % cfg.val_every == 0 or last):
                score = float(np.mean([
                    _foreground_dice(predict_index(eval_net, vx, dev), vy, k)
                    for vx, vy in zip(val_xs, val_ys, strict=True)
                ]))
                hist["val"].append((it, score))
                if score > best + 1e-4:
                    best, best_it, bad = score, it, 0
                    best_state = copy.deepcopy(eval_net.state_dict())
                else:
                    bad += 1
                if log is not None:
                    log(f"it {it} loss {np.mean(hist['loss'][-cfg.val_every:]):.4f} "
                        f"val dice {score:.4f} (best {best:.4f} @ {best_it}) {elapsed:.0f}s")
                if bad >= cfg.patience:
                    stop = "early_stopping"
                    break
            elif log is not None and not val_xs and it % cfg.val_every == 0:
                log(f"it {it} loss {np.mean(hist['loss'][-cfg.val_every:]):.4f} {elapsed:.0f}s")
            if over:
                stop = "time_limit"
                break
    finally:
        torch.set_num_threads(old_threads)
        if flushed:
            torch.set_flush_denormal(False)
        if bar is not None:
            bar.stop()
    if best_state is not None:
        net.load_state_dict(best_state)
    elif ema_net is not None:
        net.load_state_dict(ema_net.state_dict())
    if fast_layout:
        net.to(memory_format=torch.contiguous_format)
    net.eval()
    hist.update(best_iteration=best_it if best_state is not None else it, iterations_run=it,
                stop_reason=stop, train_seconds=time.perf_counter() - t0,
                train_cpu_seconds=time.process_time() - c0,
                best_val_dice=None if best_state is None else best)
    return hist


# ----------------------------------------------------------------------------------------------
# fitted model, fit and load


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

    def predict(self, image: np.ndarray, *, channel_axis: int | None = None, rng: Any = None,
                tta: bool = False, keep_largest: bool = False, **kwargs: Any) -> np.ndarray:
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
            "config": self.config,
            "state_dict": state,
            "preprocessing": dataclasses.asdict(self.preprocessing),
            "train": self.params,
            "info": self.info,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (temporary file, then rename); return the path."""
        import torch

        path = Path(path)
        buf = io.BytesIO()
        torch.save(self.checkpoint(), buf)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def __repr__(self) -> str:
        return (f"NetworkModel(method={self.method!r}, arch={self.arch!r}, "
                f"classes={self.preprocessing.classes})")


def load_network(data: dict[str, Any], path: Any = None) -> NetworkModel:
    """Rebuild a :class:`NetworkModel` from a checkpoint dict (``physeg.load`` calls this)."""
    for key in ("method", "arch", "config", "state_dict", "preprocessing"):
        if key not in data:
            raise ValueError(f"{path or 'checkpoint'} is not a physeg network checkpoint "
                             f"(missing {key!r}).")
    net = build_network(data["arch"], **data["config"])
    net.load_state_dict(data["state_dict"])
    net.eval()
    pre = Preprocessing(**data["preprocessing"])
    return NetworkModel(data["method"], data["arch"], data["config"], net, pre,
                        data.get("train", {}), data.get("info", {}))


def _prepare(images, masks, channel_axis, spatial_dims, input_norm="dataset"):
    if masks is None:
        raise ValueError("training needs one mask per image; got masks=None.")
    raw = [np.asarray(im) for im in images]
    if (channel_axis is None and spatial_dims != 3 and raw
            and all(a.ndim == 3 and a.shape[-1] in (3, 4) for a in raw)):
        channel_axis = -1  # every image is (rows, cols, 3|4): colour, not a thin volume
    arrs = [check_image(a, channel_axis=channel_axis, name=f"image {i}")
            for i, a in enumerate(raw)]
    spatial = [a.shape[:-1] if channel_axis is not None else a.shape for a in arrs]
    nds = {len(s) for s in spatial}
    chans = {a.shape[-1] if channel_axis is not None else 1 for a in arrs}
    if len(nds) != 1 or len(chans) != 1:
        raise ValueError(
            f"all training images need the same number of spatial axes and channels; got "
            f"spatial dims {sorted(nds)} and channels {sorted(chans)}."
        )
    ndim = nds.pop()
    if spatial_dims is not None and spatial_dims != ndim:
        raise ValueError(f"spatial_dims={spatial_dims} but the images have {ndim} spatial axes.")
    labs = [check_labels_like(m, s, name=f"mask {i}") for i, (m, s) in
            enumerate(zip(masks, spatial, strict=True))]
    classes = sorted(np.unique(np.concatenate([np.unique(m) for m in labs])).tolist())
    if len(classes) < 2:
        raise ValueError(
            f"the training masks hold a single label value {classes}; at least two classes "
            "(e.g. 0 = background, 1 = object) are needed."
        )
    f01 = [to_float01(a) for a in arrs]
    c = chans.pop()
    flat = np.concatenate([f.reshape(-1, c) for f in f01], axis=0)
    mean = flat.mean(axis=0)
    std = np.maximum(flat.std(axis=0), 1e-6)
    pre = Preprocessing(ndim=ndim, in_channels=c, classes=[int(v) for v in classes],
                        mean=[float(v) for v in mean], std=[float(v) for v in std],
                        norm=input_norm)
    ca = -1 if channel_axis is not None else None
    xs = [pre.image(a, ca) for a in arrs]
    ys = [pre.mask(m, s) for m, s in zip(labs, spatial, strict=True)]
    return pre, xs, ys, channel_axis


def fit_network(
    method: str,
    arch: str,
    images: Sequence[Any],
    masks: Sequence[Any] | None,
    *,
    arch_config: dict[str, Any] | None = None,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    rng: Any = 0,
    val_images: Sequence[Any] | None = None,
    val_masks: Sequence[Any] | None = None,
    log: Callable[[str], None] | None = None,
    **train_params: Any,
) -> NetworkModel:
    """Build the network ``arch``, train it on ``images``/``masks`` and wrap it as a Model.

    Parameters
    ----------
    method : str
        Registry name recorded in the checkpoint (``physeg.load`` dispatches on it).
    arch : str
        Network architecture name (see :func:`register_arch`).
    images, masks : sequences of arrays
        Training data; masks hold integer labels of the images' spatial shape.
    arch_config : dict
        Keyword arguments of the network class (``in_channels``, ``num_classes`` and
        ``ndim`` are filled in from the data).
    channel_axis : int, optional
        Colour axis of the images (-1 for RGB). When None and every image is
        (rows, cols, 3 or 4), the last axis is taken as colour unless ``spatial_dims=3``.
    spatial_dims : int, optional
        2 or 3; checked against the images.
    rng : None, int or numpy.random.Generator
        Seeds the validation split, weight initialisation, batches and augmentation.
    val_images, val_masks : sequences, optional
        Explicit validation data; otherwise ``val_fraction`` of the training images is held out
        (at least 1 when the fraction is positive and there are ≥ 2 images).
    log : callable(str), optional
        Progress lines.
    **train_params
        Fields of :class:`TrainConfig`.

    Returns
    -------
    NetworkModel
    """
    import torch

    cfg = TrainConfig(**train_params).check()
    gen = as_rng(rng)
    images, masks = list(images), None if masks is None else list(masks)
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"got {len(images)} images but {len(masks)} masks.")
    pre, xs, ys, channel_axis = _prepare(images, masks, channel_axis, spatial_dims,
                                         cfg.input_norm)
    if val_images is not None:
        if val_masks is None or len(val_masks) != len(val_images):
            raise ValueError("val_images need one mask each: pass val_masks of the same length.")
        ca = -1 if channel_axis is not None else None
        arrs = [check_image(v, channel_axis=channel_axis, name="validation image")
                for v in val_images]
        vxs = [pre.image(a, ca) for a in arrs]
        vys = [pre.mask(m, y.shape[1:]) for m, y in zip(val_masks or [], vxs, strict=True)]
        txs, tys = xs, ys
    else:
        n_val = 0
        if cfg.val_fraction > 0 and len(xs) >= 2:
            n_val = max(1, int(round(cfg.val_fraction * len(xs))))
        tr, va, _ = split_indices(len(xs), len(xs) - n_val, n_val=n_val, rng=gen)
        txs, tys = [xs[i] for i in tr], [ys[i] for i in tr]
        vxs, vys = [xs[i] for i in va], [ys[i] for i in va]
    config = full_config(arch, {**(arch_config or {}), "in_channels": pre.in_channels,
                                "num_classes": len(pre.classes), "ndim": pre.ndim})
    seed = int(gen.integers(0, 2**31 - 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(arch, **config)
    hist = train_network(net, txs, tys, config=cfg, val_xs=vxs, val_ys=vys,
                         num_classes=len(pre.classes), rng=gen, log=log)
    net.to("cpu")
    info = {"history": hist, "n_train": len(txs), "n_val": len(vxs),
            "parameters": count_parameters(net), "torch_seed": seed}
    params = {**dataclasses.asdict(cfg), "channel_axis": channel_axis}
    return NetworkModel(method, arch, config, net, pre, params, info)


def split_fit_params(params: dict[str, Any], arch_names: Sequence[str]
                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split validated fit parameters into (architecture, training, data) keyword dicts."""
    arch = {k: v for k, v in params.items() if k in arch_names}
    data = {k: params[k] for k in ("rng", "channel_axis", "spatial_dims") if k in params}
    train = {k: v for k, v in params.items() if k not in arch and k not in data}
    if data.get("rng") is None:
        data["rng"] = 0
    return arch, train, data


def arch_config(arch: dict[str, Any]) -> dict[str, Any]:
    """Architecture parameters from the registry (CLI strings allowed) → network kwargs.

    ``widths`` ("8,16,32" or a sequence) and ``strides`` ("2;1,2,2" or a list) are parsed;
    ``None`` entries (= "use the network's default") are dropped.
    """
    out = dict(arch)
    if "widths" in out:
        out["widths"] = parse_ints(out["widths"], "widths")
    if "strides" in out:
        out["strides"] = parse_strides(out["strides"])
    return {k: v for k, v in out.items() if v is not None}


def parse_ints(text: Any, name: str) -> tuple[int, ...]:
    """Parse ``"16,32,64"`` (or a sequence) into a tuple of positive ints."""
    if isinstance(text, str):
        parts = [p for p in text.replace("(", "").replace(")", "").replace("[", "")
                 .replace("]", "").replace(" ", "").split(",") if p]
    else:
        parts = list(text)
    try:
        out = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be comma-separated integers like '16,32,64'; got {text!r}."
                         ) from None
    if not out or min(out) < 1:
        raise ValueError(f"{name} must hold at least one positive integer; got {text!r}.")
    return out


def parse_strides(text: Any, ndim_hint: int | None = None) -> list[Any] | None:
    """Parse strides ``"1,2,2;2;2"`` (levels by ``;``, axes by ``,``); None/"" = all 2."""
    if text is None or (isinstance(text, str) and text.strip() in ("", "auto", "none")):
        return None
    if not isinstance(text, str):
        return list(text)
    out: list[Any] = []
    for lvl in text.split(";"):
        vals = parse_ints(lvl, "strides")
        out.append(vals[0] if len(vals) == 1 else vals)
    return out
