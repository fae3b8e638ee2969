r"""PDE-regularised U-Net (Poudel & Khadka 2026): a U-Net trained with physics priors.

The network is the plain U-Net of :mod:`physeg.families.nets.unet` (same class, same trainer,
:mod:`physeg.families.nets.train`); only the training objective differs:

.. math::

    L(\theta) = \underbrace{L_\text{Dice}(p, y) + w_\text{CE}\,\mathrm{CE}(p, y)}_\text{data}
        + \lambda_\text{RD}\,L_\text{RD}(u) + \lambda_\text{PF}\,L_\text{PF}(u),

with :math:`p = \operatorname{softmax}(\text{logits})`, :math:`u` the foreground probability
:math:`p_1` (binary tasks) or every class channel (K > 2, terms averaged over channels),

.. math::

    L_\text{RD}(u) = \operatorname{mean}_x\big(D\,\Delta_h u + u(1-u)(u-a)\big)^2,\qquad
    L_\text{PF}(u) = \operatorname{mean}_x\Big[\tfrac{\varepsilon}{2}|\nabla_h u|^2
        + \tfrac{1}{\varepsilon}u^2(1-u)^2\Big]

(:mod:`physeg.families.nets.priors`: 5/7-point Laplacian, central differences, mirror
boundary, pixel units). Padding added by the trainer is left out of every term (``valid``).

Schedules (``schedule``)
    ``"two-stage"`` (default, the authors' code): stage I trains on the data term alone for
    ``stage1_fraction`` of ``iterations``; stage II continues from those weights with a fresh
    Adam optimiser at ``lr * stage2_lr_factor`` and adds the priors. ``"single"``: the priors
    from the first iteration, one stage at ``lr``.

Choices made where the paper left room (details: ``docs/methods/nets.md``)
--------------------------------------------------------------------------
* **Data term**: soft Dice plus ``ce_weight`` × cross-entropy (= BCE on the foreground logit
  difference for 2 classes), summed with weight 1 where the authors weight 0.5 each.
* **Presets** (:data:`physeg.families.nets.priors.PRESETS`): ``"poudel2026"`` (the authors'
  D = 5, ε = 0.05 px, λ = 1e-4) and ``"allen-cahn"`` (default: ε = 1.5 px, D = ε²/4, λ = 1,
  a resolved diffuse interface), since the paper's values change nothing measurable; any of
  ``lambda_rd``, ``lambda_pf``, ``D``, ``a``, ``eps`` overrides the preset.
* **Stages**: ``iterations`` is the total; validation and early stopping apply within each
  stage, and each stage keeps its best-validation weights.
* **Warm start** (Python API): ``init=model`` replaces stage I by a trained U-Net.
* **Inference** is on the whole image (reflect-padded to the stride product), not tiled.
* The hard-constraint variant (Allen–Cahn steps as an output layer) is not provided.

References
----------
S. K. Poudel, S. K. Khadka, "PDE-Constrained Optimization for Neural Image Segmentation with
Physics Priors", :arXiv:`2602.01069` (2026).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Sequence

from .._registry import Method, Param, register
from ._config import PREDICT_PARAMS, TRAIN_PARAMS
from .unet import ARCH_PARAMS

__all__ = ["PRIOR_PARAMS", "fit_pde_unet", "load_pde_unet", "make_prior_terms",
           "resolve_prior"]

PRIOR_PARAMS: tuple[Param, ...] = (
    Param("preset", "str", "allen-cahn",
          "prior constants: 'allen-cahn' (eps 1.5 px, D = eps^2/4, lambda 1) or "
          "'poudel2026' (paper code: D 5, eps 0.05, lambda 1e-4)",
          choices=("allen-cahn", "poudel2026")),
    Param("lambda_rd", "float", None,
          "weight of the reaction-diffusion residual (0 = off); higher = smoother maps",
          low=0.0, high=1e3),
    Param("lambda_pf", "float", None,
          "weight of the phase-field energy (0 = off); higher = crisper, shorter boundaries",
          low=0.0, high=1e3),
    Param("D", "float", None, "diffusion coefficient of the RD residual (pixels^2)",
          low=0.0, high=1e4),
    Param("a", "float", None, "bistable threshold of the reaction u(1-u)(u-a)", low=0.0,
          high=1.0),
    Param("eps", "float", None, "phase-field interface width (pixels)", low=1e-6, high=1e3),
    Param("schedule", "str", "two-stage",
          "'two-stage': data term first, priors added in stage II (paper); 'single': priors "
          "from the start", choices=("two-stage", "single")),
    Param("stage1_fraction", "float", 0.5,
          "two-stage: fraction of the iterations spent in stage I (1 = stage I only)",
          low=0.0, high=1.0),
    Param("stage2_lr_factor", "float", 0.1,
          "two-stage: stage-II learning rate = lr * this factor (paper train.py 0.1)",
          low=1e-4, high=10.0),
)


def resolve_prior(preset: str = "allen-cahn", **overrides: Any) -> dict[str, float]:
    """Prior constants: the preset's values with every non-``None`` override applied.

    Returns
    -------
    dict
        ``lambda_rd``, ``lambda_pf``, ``D``, ``a``, ``eps`` as floats.

    Examples
    --------
    >>> resolve_prior("poudel2026", lambda_pf=0.0)["D"]
    5.0
    """
    from ..._validate import look_up_option
    from .priors import PRESETS

    name = look_up_option(preset, PRESETS, what="prior preset")
    out = dict(PRESETS[name])
    for key, val in overrides.items():
        if key not in out:
            raise ValueError(f"unknown prior constant {key!r}; expected one of {sorted(out)}.")
        if val is not None:
            out[key] = float(val)
    return out


def _prior_field(logits: Any):
    """Probabilities the priors act on: p_1 for K = 2, all K channels otherwise."""
    import torch

    p = torch.softmax(logits, dim=1)
    return p[:, 1:2] if p.shape[1] == 2 else p


def make_prior_terms(
    *,
    lambda_rd: float,
    lambda_pf: float,
    D: float,
    a: float,
    eps: float,
    spacing: Sequence[float] | float | None = None,
) -> dict[str, Callable[..., Any]]:
    """Weighted prior terms in the trainer's ``extra_terms`` form (zero weights left out).

    Parameters
    ----------
    lambda_rd, lambda_pf, D, a, eps : float
        See :func:`physeg.families.nets.priors.pde_prior_loss`.
    spacing : float or sequence, optional
        Grid step per axis (pixel units by default).

    Returns
    -------
    dict
        ``{"rd": fn, "pf": fn}`` with ``fn(logits, inputs, target, valid) -> Tensor``;
        pass it to :func:`physeg.families.nets.train.train_network` as ``extra_terms``.
    """
    from . import priors

    # the weights' range is PRIOR_PARAMS' (checked by the registry); 0 leaves a term out
    terms: dict[str, Callable[..., Any]] = {}
    if lambda_rd > 0:
        def rd(logits, inputs, target, valid):
            return lambda_rd * priors.reaction_diffusion_loss(
                _prior_field(logits), D=D, a=a, spacing=spacing, valid=valid)
        terms["rd"] = rd
    if lambda_pf > 0:
        def pf(logits, inputs, target, valid):
            return lambda_pf * priors.phase_field_energy(
                _prior_field(logits), eps=eps, spacing=spacing, valid=valid)
        terms["pf"] = pf
    return terms


_PRIOR_NAMES = tuple(p.name for p in PRIOR_PARAMS)


def fit_pde_unet(
    images: Sequence[Any],
    masks: Sequence[Any] | None,
    *,
    init: Any = None,
    val_images: Sequence[Any] | None = None,
    val_masks: Sequence[Any] | None = None,
    log: Callable[[str], None] | None = None,
    progress: Any = None,
    **params: Any,
):
    """Train the PDE-regularised U-Net (``physeg.fit("pde-unet", images, masks, **params)``).

    Parameters
    ----------
    images, masks : sequences of arrays
        Training images (2D/3D, grey or with ``channel_axis``) and integer label masks.
    init : NetworkModel, optional
        A trained ``unet``/``pde-unet`` model whose weights replace stage I (two-stage only;
        its preprocessing is reused). The model passed in is not modified.
    val_images, val_masks : sequences, optional
        Validation data for model selection within each stage; otherwise ``val_fraction`` of
        the training images is held out (none when it is 0).
    log : callable(str), optional
        Progress lines from the trainer.
    progress : callable(done, total, message) or bool, optional
        A callable is called after every iteration of both stages, ``done`` counting over
        the whole schedule; a bool is the trainer's own ``progress`` bar parameter.
    **params
        Prior and schedule parameters (:data:`PRIOR_PARAMS`), U-Net parameters
        (:data:`physeg.families.nets.unet.ARCH_PARAMS`: ``widths``, ``strides``, ``norm``) and
        training parameters (:data:`physeg.families.nets.train.TRAIN_PARAMS`: ``iterations`` (total
        over both stages), ``batch_size``, ``lr``, ``loss`` (default ``"dice_ce"`` here),
        ``patch``, ``rng``, ``channel_axis`` …).

    Returns
    -------
    physeg.families.nets.train.NetworkModel
        ``predict(image)`` gives labels; ``info`` holds the prior constants, the schedule and
        both stages' histories (per-iteration loss and the weighted ``rd``/``pf`` terms).

    Raises
    ------
    ValueError
        ``init`` with ``schedule="single"``, or an ``init`` model that is not a U-Net.
    """
    import torch

    from ..._validate import as_rng, check_image
    from ._arch import build_network, count_parameters
    from ._config import TrainConfig, arch_config, progress_callback, split_fit_params
    from ._model import NetworkModel
    from .train import holdout_split, prepare_training_data, train_network

    report, params = progress_callback(progress, dict(params))
    prior_args = {k: params.pop(k) for k in _PRIOR_NAMES if k in params}
    defaults = {p.name: p.default for p in PRIOR_PARAMS}
    opts = {**defaults, **{k: v for k, v in prior_args.items() if v is not None}}
    prior = resolve_prior(opts["preset"], **{k: opts[k] for k in
                                             ("lambda_rd", "lambda_pf", "D", "a", "eps")})
    params.setdefault("loss", "dice_ce")
    arch, train_kw, data = split_fit_params(params, [p.name for p in ARCH_PARAMS])
    cfg = TrainConfig(**train_kw)
    schedule = opts["schedule"]
    channel_axis = data.get("channel_axis")
    ca = -1 if channel_axis is not None else None
    gen = as_rng(data["rng"])
    seeds = [int(s) for s in gen.integers(0, 2**31 - 1, size=4)]  # split, init, stage I, II

    if init is not None:
        if schedule != "two-stage":
            raise ValueError(
                "init= replaces stage I of the two-stage schedule; use schedule='two-stage' "
                "(or leave init out for schedule='single')."
            )
        if getattr(init, "arch", None) != "unet" or not hasattr(init, "preprocessing"):
            raise ValueError(
                f"init must be a trained 'unet' or 'pde-unet' model; got {init!r}."
            )
        pre = init.preprocessing
        images = list(images)
        if masks is None or len(masks) != len(images):
            raise ValueError("training needs one mask per image.")
        arrs = [check_image(im, channel_axis=channel_axis, name=f"image {i}")
                for i, im in enumerate(images)]
        xs = [pre.image(a, ca, name=f"image {i}") for i, a in enumerate(arrs)]
        ys = [pre.mask(m, x.shape[1:], name=f"mask {i}") for i, (m, x) in
              enumerate(zip(masks, xs, strict=True))]
        config = dict(init.config)
    else:
        # the trainer may recognise colour images by their shape: take its channel axis
        pre, xs, ys, channel_axis = prepare_training_data(
            list(images), None if masks is None else list(masks), channel_axis,
            data.get("spatial_dims"))
        ca = -1 if channel_axis is not None else None
        config = {**arch_config({**{p.name: p.default for p in ARCH_PARAMS}, **arch}),
                  "in_channels": pre.in_channels, "num_classes": len(pre.classes),
                  "ndim": pre.ndim}
    if val_images is not None:
        varrs = [check_image(v, channel_axis=channel_axis, name="validation image")
                 for v in val_images]
        vxs = [pre.image(a, ca) for a in varrs]
        if val_masks is None or len(val_masks) != len(vxs):
            raise ValueError("val_images needs val_masks with one mask per validation image.")
        vys = [pre.mask(m, x.shape[1:]) for m, x in zip(val_masks, vxs, strict=True)]
        txs, tys = xs, ys
    else:
        tr, va = holdout_split(len(xs), cfg.val_fraction, seeds[0])
        txs, tys = [xs[i] for i in tr], [ys[i] for i in tr]
        vxs, vys = [xs[i] for i in va], [ys[i] for i in va]

    if schedule == "two-stage":
        n1 = int(round(opts["stage1_fraction"] * cfg.iterations))
        lr2 = cfg.lr * opts["stage2_lr_factor"]
    else:
        n1, lr2 = 0, cfg.lr
    n2 = cfg.iterations - n1
    terms = make_prior_terms(**prior)
    k = len(pre.classes)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(cfg.threads, old_threads)))
    hists: dict[str, Any] = {}
    # the stages report one count over the whole schedule (stage II after stage I's n1)
    done_before = {"n": 0}

    def stage_report(done: int, total: int | None, message: str) -> None:
        if report is not None:
            stage = "stage II" if done_before["n"] or init is not None else "stage I"
            report(done_before["n"] + done, cfg.iterations, f"{stage}: {message}")

    try:
        if init is not None:
            net = copy.deepcopy(init.net)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seeds[1])
                net = build_network("unet", **config)
        if n1 > 0 and init is None:
            cfg1 = dataclasses.replace(cfg, iterations=n1)
            hists["stage1"] = train_network(net, txs, tys, config=cfg1, val_xs=vxs,
                                            val_ys=vys, num_classes=k, rng=seeds[2], log=log,
                                            report=stage_report)
            done_before["n"] = n1
        if n2 > 0:
            cfg2 = dataclasses.replace(cfg, iterations=n2, lr=lr2)
            hists["stage2"] = train_network(net, txs, tys, config=cfg2, val_xs=vxs,
                                              val_ys=vys, num_classes=k, rng=seeds[3],
                                              extra_terms=terms, log=log,
                                              report=stage_report)
    finally:
        torch.set_num_threads(old_threads)
    net.to("cpu").eval()
    info = {
        "history": hists,
        "prior": prior,
        "schedule": schedule,
        "stage_iterations": [0 if init is not None else n1, n2],
        "stage2_lr": lr2,
        "warm_start": init is not None,
        "n_train": len(txs),
        "n_val": len(vxs),
        "parameters": count_parameters(net),
        "seeds": seeds,
    }
    fit_params = {**dataclasses.asdict(cfg), "channel_axis": channel_axis, **opts}
    return NetworkModel("pde-unet", "unet", config, net, pre, fit_params, info)


def load_pde_unet(data: dict[str, Any], path: Any = None):
    """Rebuild a trained PDE-U-Net from a checkpoint dict (used by ``physeg.load``)."""
    from ._model import load_network

    return load_network(data, path)


def _fit_params() -> tuple[Param, ...]:
    # the same schema as the U-Net's, but Dice + CE is the default loss (the authors' code)
    train = tuple(dataclasses.replace(p, default="dice_ce") if p.name == "loss" else p
                  for p in TRAIN_PARAMS)
    return PRIOR_PARAMS + ARCH_PARAMS + train


register(
    Method(
        name="pde-unet",
        func=None,
        params=PREDICT_PARAMS,
        summary="a U-Net trained on labelled images with reaction-diffusion and phase-field "
                "priors on its output; train it with physeg fit first",
        fit_func=fit_pde_unet,
        load_func=load_pde_unet,
        supports_3d=True,
        supports_multichannel=True,
        needs_labels=True,
        requires=("torch",),
        fit_params=_fit_params(),
    )
)
