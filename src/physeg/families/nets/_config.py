"""Parameter schemas of the trained networks and the parsing of their CLI-style values.

:data:`TRAIN_PARAMS` is the one source of the trainer's defaults and ranges: the registry
checks ``physeg.fit`` parameters against it, and :class:`TrainConfig` takes its field defaults
from it. The defaults are the recipe that trained the shipped ``models/msnet_wbc_s30.pt``
(``benchmarks/msnet_wbc.py``, "v2"; its checkpoint's stored parameters): Dice + cross-entropy,
per-image input standardisation, gradient clipping at 1, augmentation with intensity 0.2,
colour mixing 0.1 and zoom 0.15, validation every 25 iterations with patience 30, at most
3000 iterations within 1150 CPU seconds on one torch thread; whole images padded to one patch
(``patch`` auto: 128 for the ~120 px WBC images), batch 4, Adam lr 1e-3, StepLR 0.8 / 200.
:data:`PREDICT_PARAMS` declares ``NetworkModel.predict``'s options. The helpers split a
validated parameter dict into architecture, training and data keywords and parse the
architecture strings the CLI passes (``widths="8,16,32"``, ``strides="1,2,2;2"``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from .._registry import Param

__all__ = [
    "TRAIN_PARAMS",
    "PREDICT_PARAMS",
    "DATA_PARAMS",
    "TrainConfig",
    "split_fit_params",
    "progress_callback",
    "arch_config",
    "parse_ints",
    "parse_strides",
]

TRAIN_PARAMS: tuple[Param, ...] = (
    Param("iterations", "int", 3000,
          "training iterations (mini-batches); more = longer, better fit", low=1, high=1_000_000),
    Param("batch_size", "int", 4, "images per mini-batch", low=1, high=1024),
    Param("lr", "float", 1e-3, "Adam initial learning rate", low=1e-7, high=1.0),
    Param("step_size", "int", 200, "StepLR: iterations between learning-rate decays (paper 200)",
          low=1, high=1_000_000),
    Param("gamma", "float", 0.8, "StepLR decay factor (paper 0.8)", low=0.01, high=1.0),
    Param("loss", "str", "dice_ce", "training loss: soft Dice + cross-entropy, or soft Dice alone",
          choices=("dice", "dice_ce")),
    Param("ce_weight", "float", 1.0, "weight of cross-entropy in dice_ce", low=0.0, high=100.0),
    Param("val_fraction", "float", 0.2,
          "fraction of the training images held out for validation/early stopping (0 = none)",
          low=0.0, high=0.9),
    Param("val_every", "int", 25, "iterations between validations", low=1, high=1_000_000),
    Param("patience", "int", 30, "validations without improvement before stopping",
          low=1, high=1_000_000),
    Param("patch", "int", None, "training patch side (auto: largest image, rounded up)",
          low=4, high=4096),
    Param("augment", "bool", True, "random flips, 90-degree rotations, intensity changes"),
    Param("intensity", "float", 0.2, "intensity augmentation strength s (x <- a x + b)",
          low=0.0, high=1.0),
    Param("device", "str", "cpu", "torch device", choices=("cpu", "cuda", "auto")),
    Param("threads", "int", 1, "CPU threads for torch (at most); the CPU budget counts all "
          "of them", low=1, high=256),
    Param("max_time", "float", None, "stop training after this many seconds", low=1.0),
    Param("max_cpu_time", "float", 1150.0,
          "stop training after this many CPU seconds of the process (all threads; a "
          "machine-load-independent budget; 0 = no budget)", low=0.0),
    Param("progress", "bool", False, "show a rich progress bar while training (Python calls; "
          "`physeg fit` always shows its own)"),
    Param("clip_grad", "float", 1.0, "clip the gradient norm to this value", low=1e-6),
    Param("colour", "float", 0.1,
          "colour augmentation: random channel mixing x <- M x, M = I + N(0, colour^2) per "
          "entry (0 = off); simulates stain changes between slides", low=0.0, high=1.0),
    Param("zoom", "float", 0.15,
          "scale augmentation: random zoom by a factor in [1/(1+zoom), 1+zoom] before the "
          "crop (0 = off)", low=0.0, high=1.0),
    Param("input_norm", "str", "image",
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

#: Parameters of :data:`TRAIN_PARAMS` that describe the data, not the optimisation; they are
#: keywords of ``fit_network``, not fields of :class:`TrainConfig`.
DATA_PARAMS: tuple[str, ...] = ("rng", "channel_axis", "spatial_dims")

#: Parameters of ``NetworkModel.predict`` (``physeg segment --model ckpt.pt --param tta=true``).
PREDICT_PARAMS: tuple[Param, ...] = (
    Param("tta", "bool", False,
          "test-time augmentation: average the class probabilities over the 8 flips / 90-degree "
          "turns (8x the inference time; +0.003 to +0.006 mIoU in our WBC runs)"),
    Param("keep_largest", "bool", False,
          "single-object post-processing: keep the largest connected foreground object and "
          "fill its holes (for images of one centred object, e.g. a white blood cell)"),
)

_DEFAULT = {p.name: p.default for p in TRAIN_PARAMS}


@dataclasses.dataclass
class TrainConfig:
    """Training parameters; defaults and ranges are those of :data:`TRAIN_PARAMS`.

    Every field is converted and validated through its :class:`Param` when the config is
    built (also by ``dataclasses.replace``), so a config made by hand is held to the same
    schema as ``physeg.fit`` parameters.

    Raises
    ------
    ValueError
        A value out of its Param's range or choices.
    """

    iterations: int = _DEFAULT["iterations"]
    batch_size: int = _DEFAULT["batch_size"]
    lr: float = _DEFAULT["lr"]
    step_size: int = _DEFAULT["step_size"]
    gamma: float = _DEFAULT["gamma"]
    loss: str = _DEFAULT["loss"]
    ce_weight: float = _DEFAULT["ce_weight"]
    val_fraction: float = _DEFAULT["val_fraction"]
    val_every: int = _DEFAULT["val_every"]
    patience: int = _DEFAULT["patience"]
    patch: int | None = _DEFAULT["patch"]
    augment: bool = _DEFAULT["augment"]
    intensity: float = _DEFAULT["intensity"]
    device: str = _DEFAULT["device"]
    threads: int = _DEFAULT["threads"]
    max_time: float | None = _DEFAULT["max_time"]
    max_cpu_time: float | None = _DEFAULT["max_cpu_time"]
    progress: bool = _DEFAULT["progress"]
    clip_grad: float | None = _DEFAULT["clip_grad"]
    colour: float = _DEFAULT["colour"]
    zoom: float = _DEFAULT["zoom"]
    input_norm: str = _DEFAULT["input_norm"]
    ema: float = _DEFAULT["ema"]
    rotate: bool = _DEFAULT["rotate"]
    elastic: float = _DEFAULT["elastic"]

    def __post_init__(self) -> None:
        for p in TRAIN_PARAMS:
            if p.name not in DATA_PARAMS:
                setattr(self, p.name, p.convert(getattr(self, p.name)))


def progress_callback(progress: Any, params: dict[str, Any]
                      ) -> tuple[Callable[[int, int | None, str], None] | None, dict[str, Any]]:
    """Split a fit's ``progress`` argument: a callable is the ``physeg.fit(progress=)``
    callback; anything else (a bool) is the trainer's own ``progress`` parameter (a rich bar).

    Returns ``(callback or None, params)``.
    """
    if callable(progress):
        return progress, params
    if progress is not None:
        params = {**params, "progress": progress}
    return None, params


def split_fit_params(params: dict[str, Any], arch_names: Sequence[str]
                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split validated fit parameters into (architecture, training, data) keyword dicts.

    The data dict always holds ``rng`` (0 when absent or None: training is seeded).
    """
    arch = {k: v for k, v in params.items() if k in arch_names}
    data = {k: params[k] for k in DATA_PARAMS if k in params}
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


def parse_strides(text: Any) -> list[Any] | None:
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
