r"""The trainer of every supervised physeg network (MSNet, U-Net, PDE-regularised U-Net).

:func:`fit_network` validates the data, fits the :class:`~._model.Preprocessing`, holds out
validation images, builds the network by name (:mod:`._arch`) and runs :func:`train_network`:

* **Batches** (:mod:`._augment`): ``batch_size`` images drawn with replacement, cut or padded
  to one patch (default: the largest training size per axis rounded up to the network's
  divisor, capped at 256² / 96³); padded pixels carry ``valid = 0`` and stay out of the loss.
* **Optimisation**: Adam with ``lr`` and the MSNet paper's schedule, StepLR ×``gamma`` (0.8)
  every ``step_size`` (200) *iterations*, stepped per iteration; optional gradient clipping
  and an exponential moving average of the weights (``ema``).
* **Loss**: soft multi-class Dice (the paper's loss) or Dice + CE (:mod:`.losses`), plus extra
  weighted terms: ``net.loss_terms(logits, inputs)`` if the network defines it, and the
  caller's ``extra_terms`` (how the PDE-regularised U-Net adds its priors); each is logged.
* **Validation and stopping**: every ``val_every`` iterations the mean foreground Dice (hard
  labels, classes 1..K-1) on the validation images; the best weights are restored at the end;
  stop after ``patience`` validations without improvement, ``iterations``, ``max_time`` wall
  seconds or ``max_cpu_time`` process CPU seconds (a budget independent of machine load).

Determinism: one numpy generator (``rng``) draws the split, the batches, the augmentation and
the torch seed of the weight initialisation (inside ``torch.random.fork_rng``, so the global
torch state is untouched). On CPU the same seed gives the same weights and labels; a time
limit is the only machine-dependent part. torch is imported inside the functions.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np

from ..._validate import as_rng, check_image, check_labels_like, to_float01
from ...data.datasets import split
from ._arch import build_network, count_parameters, full_config
from ._augment import draw_batch, patch_shape
from ._config import TrainConfig
from ._model import NetworkModel, Preprocessing, predict_index

__all__ = ["fit_network", "train_network", "prepare_training_data", "holdout_split"]


def prepare_training_data(images: Sequence[Any], masks: Sequence[Any] | None,
                          channel_axis: int | None, spatial_dims: int | None,
                          input_norm: str = "dataset"):
    """Validate training images and masks and fit the :class:`Preprocessing` to them.

    When ``channel_axis`` is None and every image is (rows, cols, 3 or 4), the last axis is
    taken as colour unless ``spatial_dims=3``.

    Returns
    -------
    preprocessing : Preprocessing
    xs, ys : lists of arrays
        Standardised (C, *spatial) float32 images and int64 class-index masks.
    channel_axis : int or None
        The colour axis used (-1 when recognised from the shapes).
    """
    if masks is None:
        raise ValueError("training needs one mask per image; got masks=None.")
    raw = [np.asarray(im) for im in images]
    colour = [a.ndim == 3 and a.shape[-1] in (3, 4) for a in raw]
    if channel_axis is None and spatial_dims != 3 and raw and all(colour):
        channel_axis = -1  # every image is (rows, cols, 3|4): colour, not a thin volume
    elif channel_axis is None and spatial_dims != 3 and any(colour):
        i, j = colour.index(True), colour.index(False)
        raise ValueError(
            f"the training images mix colour and grey (image {i} has shape {raw[i].shape}, "
            f"image {j} {raw[j].shape}); a network takes one kind: convert them all to "
            "colour or all to grey."
        )
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


def holdout_split(n: int, val_fraction: float, rng: Any) -> tuple[list[int], list[int]]:
    """Indices of the training and validation images: ``round(val_fraction * n)`` held out.

    At least one image is held out when ``val_fraction > 0`` and ``n >= 2``; the split is
    :func:`physeg.data.datasets.split` of ``range(n)`` (one seeded permutation).

    Raises
    ------
    ValueError
        No training image would be left.
    """
    n_val = 0
    if val_fraction > 0 and n >= 2:
        n_val = max(1, int(round(val_fraction * n)))
    if n - n_val < 1:
        raise ValueError(
            f"val_fraction={val_fraction} holds out {n_val} of {n} images and leaves none to "
            "train on; lower val_fraction or pass more images."
        )
    return split(range(n), n - n_val, rng=rng)


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
    report: Callable[[int, int | None, str], None] | None = None,
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
    report : callable(done, total, message), optional
        Called after every training iteration (see :func:`train_network`).
    **train_params
        Fields of :class:`TrainConfig`.

    Returns
    -------
    NetworkModel
    """
    import torch

    cfg = TrainConfig(**train_params)
    gen = as_rng(rng)
    images, masks = list(images), None if masks is None else list(masks)
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"got {len(images)} images but {len(masks)} masks.")
    pre, xs, ys, channel_axis = prepare_training_data(images, masks, channel_axis,
                                                      spatial_dims, cfg.input_norm)
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
        tr, va = holdout_split(len(xs), cfg.val_fraction, gen)
        txs, tys = [xs[i] for i in tr], [ys[i] for i in tr]
        vxs, vys = [xs[i] for i in va], [ys[i] for i in va]
    config = full_config(arch, {**(arch_config or {}), "in_channels": pre.in_channels,
                                "num_classes": len(pre.classes), "ndim": pre.ndim})
    seed = int(gen.integers(0, 2**31 - 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(arch, **config)
    hist = train_network(net, txs, tys, config=cfg, val_xs=vxs, val_ys=vys,
                         num_classes=len(pre.classes), rng=gen, log=log, report=report)
    net.to("cpu")
    info = {"history": hist, "n_train": len(txs), "n_val": len(vxs),
            "parameters": count_parameters(net), "torch_seed": seed}
    params = {**dataclasses.asdict(cfg), "channel_axis": channel_axis}
    return NetworkModel(method, arch, config, net, pre, params, info)


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
    report: Callable[[int, int | None, str], None] | None = None,
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
    report : callable(done, total, message), optional
        ``report(iteration, config.iterations, message)`` after every iteration (the
        ``physeg.fit(..., progress=)`` protocol); the message gives the loss and the last
        validation Dice. What it raises stops the training.

    Returns
    -------
    dict
        ``loss`` (per iteration), ``terms`` (per term, per iteration), ``val`` (list of
        (iteration, mean foreground Dice)), ``best_iteration``, ``iterations_run``,
        ``stop_reason`` ("iterations" | "early_stopping" | "time_limit"), ``train_seconds``.
    """
    import torch

    from .losses import dice_ce_loss, soft_dice_loss

    cfg = config if config is not None else TrainConfig()
    gen = as_rng(rng)
    dev = _device(cfg.device)
    k = int(num_classes if num_classes is not None else max(int(y.max()) for y in ys) + 1)
    ndim = ys[0].ndim
    div = getattr(net, "divisor", (1,) * ndim)
    patch = patch_shape([y.shape for y in ys], div, ndim, cfg.patch)
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
            bx, by, bv = draw_batch(xs, ys, patch, cfg, gen)
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
                    or (cfg.max_cpu_time  # None or 0: no CPU budget
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
            if report is not None:
                val = f", validation Dice {hist['val'][-1][1]:.3f}" if hist["val"] else ""
                report(it, cfg.iterations, f"iteration {it}/{cfg.iterations}, loss "
                       f"{hist['loss'][-1]:.4f}{val}")
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
