r"""Few labels: a learned fidelity regularised by threshold dynamics (``physeg.fit("heat", ...)``).

A random forest on multiscale pixel features (:mod:`physeg._features`) learns
:math:`p(k\mid x)` from a few labelled images or scribbles; the segmentation minimises

.. math::

    E_\tau(u) = \sum_k \int u_k\,\big(-\log p(k\mid x)\big)\,dx
                + \frac{\lambda}{\sqrt\tau}\sum_k \int u_k\,(G_\tau * (1-u_k))\,dx

by heat's threshold dynamics (:mod:`._mbo`, the exact Neumann heat kernel): from the pointwise
decision :math:`u=\arg\max_k \log p(k\mid x)`, repeat :math:`\psi_k=G_\tau*u_k`,
:math:`u_k\leftarrow 1` for :math:`k=\arg\max_j \log p(j\mid x)+(2\lambda/\sqrt\tau)\psi_j`
until no pixel changes (the energy never increases). :math:`\lambda` is a length in pixels
per nat: the fidelity is in nats, so ``lam`` here is not the variance-relative λ of the
no-label model.

Per-image adaptation (``adapt > 0``): the colours of an object change between images (a brown
and a white horse), the forest knows only the training images. After the descent a diagonal
Gaussian mixture per class (5 components, CIELAB/10 + local contrast, the no-label model's
region features) is fitted on this image's own partition, ``adapt`` times its log-likelihood is
added to the learned log-probabilities, for K = 2 also ``adapt`` × 20 nats × (D − 1/2) with D
the border geodesic distance (the no-label object prior), and the descent is repeated
(``ADAPT_ROUNDS`` = 2 times): region competition started from the learned segmentation.

Labels: the classes are the distinct mask values (other than ``unlabelled``) in increasing
order, and class k is label k of the output. With ``unlabelled=0`` scribbles 1..K are labels
0..K-1 (stroke value 1 = background, 2 = object), without it a 0/1 mask gives labels 0/1.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from ..._features import LEARN_PARAM_SPECS
from ..._validate import as_rng, check_image, check_training_pairs
from .._registry import Model, Param
from ._mbo import filter_kernels, heat_smoother

__all__ = ["LEARNED_FIT_PARAMS", "LearnedHeatModel", "fit_learned", "learned_from_dict"]

#: defaults of the learned model's regulariser (measured on the development sets:
#: docs/methods/heat.md, "learned fidelity")
LEARNED_TAU = 1.0
LEARNED_LAM = 4.0
ADAPT = 1.0
ADAPT_ROUNDS = 2
#: the adaptation's border-prior weight (nats) and pixels per mixture fit; the learned model's
#: own values (measured with it), independent of the no-label model's in physeg._regions
ADAPT_BORDER_PRIOR = 20.0
ADAPT_MAX_FIT = 4000
PRIOR_SCALES = (2.0, 8.0)
#: the no-label prior's weight (nats) and the adaptation's weight when they are chosen at fit
#: time: with one training image the values below (measured on development images, not the
#: benchmark's test images: docs/methods/heat.md), with more by cross-validation over the
#: training images (``CV_FOLDS`` folds by image, forests of ``CV_TREES`` trees, the full
#: pipeline scored on at most ``CV_MAX_EVAL`` held-out images) over the candidates
PRIOR_WEIGHT_ONE = 4.0
ADAPT_ONE = 1.0
#: binary, prior="default", prior_weight chosen at fit time: with one training image the
#: model returns the no-label result itself (``follow_prior``) when that result reaches this
#: Dice on the labelled image (with more, it is one more cross-validation candidate)
FOLLOW_DICE_ONE = 0.85
PRIOR_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0)
ADAPTS = (0.0, 1.0)
CV_FOLDS = 3
CV_TREES = 12
CV_MAX_EVAL = 6
_MAX_ITER = 200

LEARNED_FIT_PARAMS: tuple[Param, ...] = (
    Param("learn", "str", "features", "fit: features (learn p(class | pixel features) with a "
          "random forest; fidelity -log p) or grid (search tau, lam of the no-label model)",
          choices=("features", "grid")),
    *(Param(**spec) for spec in LEARN_PARAM_SPECS),
    Param("adapt", "float", None, "weight of the per-image colour mixtures re-fitted on the "
          "learned partition and of the border prior (binary; 0 = the learned likelihood "
          "alone; none = chosen at fit time: 1 for one training image, else 0 or 1 by "
          "cross-validation over the training images)", low=0.0, high=100.0),
    Param("prior_weight", "float", None, "nats by which the no-label heat segmentation (prior="
          "default) shifts the learned log-odds towards itself (0 = the forest's posterior "
          "alone; larger = closer to the no-label result; none = chosen at fit time: 4 for one "
          "training image, else 0, 1, 2, 4 or 8 by cross-validation; binary, also the "
          "no-label result itself when it fits the labels better)", low=0.0, high=100.0),
    Param("prior", "str", "default", "default: the no-label heat segmentation (its object "
          "mask, two smoothings, the intensities relative to its two phases) gives features, so "
          "the forest learns when to trust it; none: image features alone",
          choices=("default", "none")),
    Param("rng", "int", None, "seed of the pixel sampling and the forest (none = 0)", low=0,
          high=2**63 - 1),
)

Progress = Callable[[int, "int | None", str], None]


def descend(logp: np.ndarray, *, tau: float, lam: float, spacing: Sequence[float],
            max_iter: int = _MAX_ITER, workers: int | None = None,
            start: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Threshold dynamics on the fidelity ``-logp``; returns (labels, steps).

    Parameters
    ----------
    logp : ndarray of float32, shape (*spatial, K)
        Log-probabilities per class (the fidelity is their negative).
    tau : float
        Diffusion time (pixel²) of the heat kernel, > 0; the interface is smoothed over
        about ``sqrt(2 tau)`` px per step.
    lam : float
        Perimeter weight in px per nat, >= 0; larger = smoother, shorter boundaries; 0
        returns the pointwise argmax (0 steps).
    spacing : sequence of float
        Pixel size per spatial axis (> 0).
    max_iter : int, optional
        Most steps; the descent stops earlier when no pixel changes.
    workers : int, optional
        Threads of the DCT where the smoother uses it (None = one).
    start : ndarray of int, optional
        Start labels (default: the argmax of ``logp``).

    Notes
    -----
    Binary: each step sets u = [G_τ*u > (β − odds)/2β], β = 2λ/√τ; after the first step
    :math:`G_\tau*u` is updated by the scattered kernels of the flipped pixels
    (:func:`_scatter_add`, equal to re-filtering to ~1e-8) while that is cheaper.
    """
    K = logp.shape[-1]
    lab = np.argmax(logp, axis=-1) if start is None else start
    if lam <= 0:
        return lab.astype(np.intp), 0
    beta = np.float32(2.0 * lam / math.sqrt(tau))
    # built once: diffuse() would rebuild the kernels at every step
    smooth = heat_smoother(lab.shape, tau, spacing, workers=workers)
    steps = 0
    if K == 2:
        # odds + β(2ψ - 1) > 0  <=>  ψ > (β - odds) / 2β: one comparison per step
        thr = (float(beta) - (logp[..., 1] - logp[..., 0]).astype(np.float64)) / (2.0 * beta)
        v = lab == 1
        kernels = _scatter_kernels(lab.shape, tau, spacing)
        psi = smooth(v.astype(np.float32)).astype(np.float64)
        for _ in range(max_iter):
            new = psi > thr
            steps += 1
            changed = np.flatnonzero(new != v)
            if changed.size == 0:
                break
            v = new
            # after the first steps a few hundred of 262 144 pixels flip: G_τ*u is updated by
            # G_τ*(their change) (15 ms of 20 per step saved on a 512² image); the full
            # filter again when the flips cost more than it
            if kernels is None or changed.size * kernels[0].size ** v.ndim > v.size:
                psi = smooth(v.astype(np.float32)).astype(np.float64)
            else:
                _scatter_add(psi.reshape(-1), changed, np.where(v.reshape(-1)[changed], 1.0, -1.0),
                             kernels, v.shape)
        return v.astype(np.intp), steps
    kernels = _scatter_kernels(lab.shape, tau, spacing)
    psi = _phase_fields(smooth, lab, K)
    for _ in range(max_iter):
        new = np.argmax(logp + beta * psi, axis=-1)
        steps += 1
        changed = np.flatnonzero(new != lab)
        if changed.size == 0:
            break
        was, now = lab.reshape(-1)[changed], new.reshape(-1)[changed]
        lab = new
        # as for K = 2: the two indicator fields of each flipped pixel change by -1 / +1
        if kernels is None or 2 * changed.size * kernels[0].size ** lab.ndim > lab.size:
            psi = _phase_fields(smooth, lab, K)
            continue
        flat_psi = psi.reshape(-1)  # (pixels, K), C-ordered: pixel p, class k at p K + k
        for k in np.unique(np.concatenate([was, now])):
            idx = np.concatenate([changed[now == k], changed[was == k]])
            sign = np.concatenate([np.ones(int((now == k).sum())), -np.ones(int((was == k).sum()))])
            _scatter_add(flat_psi, idx, sign, kernels, lab.shape, stride=K, offset=int(k))
    return lab.astype(np.intp), steps


def _phase_fields(smooth: Callable[[np.ndarray], np.ndarray], lab: np.ndarray,
                  K: int) -> np.ndarray:
    """G*[lab == k] for every class, C-ordered float64 (*spatial, K) (updated in place)."""
    u = np.stack([lab == k for k in range(K)]).astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(smooth(u), 0, -1), dtype=np.float64)


def _scatter_kernels(shape: Sequence[int], tau: float,
                     spacing: Sequence[float]) -> list[np.ndarray] | None:
    """The 1D kernels of :func:`._mbo.heat_smoother`'s filter (:func:`._mbo.filter_kernels`),
    or None where it uses the DCT, an axis is shorter than the kernel (several reflections) or
    the axes' kernels differ in length."""
    kernels = filter_kernels(tau, spacing)
    if kernels is None or any(n < k.size for n, k in zip(shape, kernels, strict=True)):
        return None
    return kernels if len({k.size for k in kernels}) == 1 else None


def _scatter_add(out: np.ndarray, idx: np.ndarray, sign: np.ndarray,
                 kernels: list[np.ndarray], shape: tuple[int, ...], *, stride: int = 1,
                 offset: int = 0) -> None:
    """Add G*d to ``out`` (flat float64; pixel p at ``p * stride + offset``) for d = ``sign``
    at the flat pixel indices ``idx`` (0 elsewhere), equal to the separable reflecting filter:
    each kernel tap lands on its target pixel, a target beyond an edge on its mirror pixel
    (scipy's ``reflect``: -1 -> 0, n -> n - 1; the filter is symmetric, so scattering equals
    gathering). Costs len(idx) x taps, not the image size."""
    coords = np.unravel_index(idx, shape)
    flat = np.zeros((idx.size,) + (1,) * len(shape), np.intp)
    w = sign.reshape(flat.shape).astype(np.float64)
    for axis, (c, n, k) in enumerate(zip(coords, shape, kernels, strict=True)):
        r = k.size // 2
        t = c[:, None] + np.arange(-r, r + 1)
        t = np.where(t < 0, -t - 1, np.where(t >= n, 2 * n - 1 - t, t))
        view = [idx.size] + [1] * len(shape)
        view[axis + 1] = k.size
        flat = flat * n + t.reshape(view)
        w = w * k.reshape([1] * (axis + 1) + [k.size] + [1] * (len(shape) - axis - 1))
    flat, w = np.broadcast_arrays(flat, w)
    np.add.at(out, flat.ravel() * stride + offset, w.ravel())


class LearnedHeatModel(Model):
    """``physeg.fit("heat", ...)`` with ``learn="features"``: forest likelihood + heat perimeter.

    ``predict(image)`` returns labels 0..K-1 (class k = the k-th mask value); ``params`` hold
    ``tau``, ``lam``, ``adapt``, ``prior``, ``prior_weight`` and ``follow_prior`` (True: the
    labels showed that the no-label result is the better model, and ``predict`` returns it);
    ``state()`` the forest as checked arrays (no pickle).
    """

    def __init__(self, likelihood: Any, params: dict[str, Any],
                 info: dict[str, Any] | None = None):
        super().__init__("heat", params, info)
        self.likelihood = likelihood

    def state(self) -> dict[str, Any]:
        return {"learned": self.likelihood.to_state()}

    def predict(self, image: Any, *, channel_axis: int | None = None,
                spacing: Sequence[float] | None = None, rng: Any = None,
                workers: int | None = None, return_proba: bool = False,
                **kwargs: Any) -> np.ndarray:
        """Segment ``image`` (2D/3D, grey or channels on ``channel_axis``) into labels 0..K-1.

        ``kwargs`` may override ``tau``, ``lam``, ``adapt``, ``prior_weight`` (checked by
        their Params) and ``follow_prior`` (bool); a ``prior_weight`` given without
        ``follow_prior`` uses the learned model (``follow_prior=False``).
        ``rng`` draws the pixels the per-image mixtures are fitted on (``adapt > 0``; None =
        seed 0, so the same image always gives the same labels).
        ``return_proba=True`` returns the forest's fractions (*spatial, K) instead.
        """
        params = dict(self.params)
        for key, value in kwargs.items():
            if key == "follow_prior":
                params[key] = _follow_flag(value, params.get("prior"),
                                           len(self.likelihood.values))
                continue
            if key not in ("tau", "lam", "adapt", "prior_weight"):
                raise ValueError("a learned heat model takes tau, lam, adapt, prior_weight and "
                                 f"follow_prior; got {key!r}.")
            p = _param(key)
            v = p.convert(value)
            params[key] = self.params.get(key, 0.0) if v is None else v
        if "prior_weight" in kwargs and "follow_prior" not in kwargs:
            params["follow_prior"] = False
        arr = check_image(image, channel_axis=channel_axis, allow_3d=True, allow_channels=True)
        cax = -1 if channel_axis is not None else None
        spatial = arr.shape[:-1] if cax is not None else arr.shape
        if spacing is None:
            spacing = (1.0,) * len(spatial)
        spacing = tuple(float(s) for s in np.atleast_1d(spacing))
        if len(spacing) != len(spatial) or min(spacing) <= 0:
            raise ValueError(f"spacing must give one positive size per spatial axis "
                             f"({len(spatial)}); got {spacing}.")
        self.likelihood.check(arr, cax)  # before the no-label segmentation, whichever path
        if params.get("follow_prior") and not return_proba:
            return no_label_mask(arr, cax)  # the no-label result: no forest, no prior channels
        extra = prior_channels(arr, cax) if params.get("prior") == "default" else None
        if return_proba:
            return np.exp(self.likelihood.log_proba(arr, cax, extra=extra))
        if params["adapt"] > 0:
            logp, border, mix = self.likelihood.log_proba(arr, cax, with_border=True,
                                                          extra=extra)
        else:
            logp, border, mix = self.likelihood.log_proba(arr, cax, extra=extra), None, None
        lab = segment_posterior(logp, border, mix, None if extra is None else extra[..., 1],
                                tau=params["tau"], lam=params["lam"], adapt=params["adapt"],
                                prior_weight=params.get("prior_weight", 0.0),
                                spacing=spacing, rng=as_rng(0 if rng is None else rng),
                                workers=workers)
        K = logp.shape[-1]
        return lab.astype(np.uint8 if K <= 255 else np.int32)


def segment_posterior(logp: np.ndarray, border: np.ndarray | None, mix: np.ndarray | None,
                      prior: np.ndarray | None, *, tau: float, lam: float, adapt: float,
                      prior_weight: float, spacing: Sequence[float], rng: np.random.Generator,
                      workers: int | None = None) -> np.ndarray:
    r"""Labels from the learned log-probabilities: prior shift, descent, adaptation.

    ``prior`` is :math:`G_2*u` of the no-label object mask u (``prior_channels``'s second
    channel; None = no prior): the object classes gain and the background loses
    :math:`\tfrac w2(2G_2*u-1)` nats, ``w = prior_weight``, so at w = 0 the forest's posterior
    is used as it is and a large w follows the no-label result where the forest hesitates.
    Then threshold dynamics (:func:`descend`) and, for ``adapt > 0``, the per-image mixtures
    (``border``, ``mix`` from ``log_proba(with_border=True)``).
    """
    if prior is not None and prior_weight > 0:
        q = (np.float32(prior_weight / 2.0) * (2.0 * prior - 1.0)).astype(np.float32)
        logp = logp.copy()
        logp[..., 0] -= q
        logp[..., 1:] += q[..., None]
    lab, _ = descend(logp, tau=tau, lam=lam, spacing=spacing, workers=workers)
    if adapt > 0:
        lab = _adapt(logp, border, mix, lab, tau=tau, lam=lam, adapt=adapt, spacing=spacing,
                     rng=rng, workers=workers)
    return lab


def no_label_mask(arr: np.ndarray, cax: int | None) -> np.ndarray:
    """The no-label object mask (uint8 0/1): ``physeg.segment(image, "heat")``'s label 1 (rng 0,
    binary), called through the registry (this module may not import its package)."""
    from .._registry import get_method

    m = get_method("heat")
    lab = m.func(arr, channel_axis=cax, spacing=None, rng=0, **{**m.defaults(), "classes": 2})
    return (np.asarray(lab) == 1).astype(np.uint8)


def prior_channels(arr: np.ndarray, cax: int | None) -> np.ndarray:
    r"""The no-label model's opinion as features: its object mask u (the binary default
    ``heat`` segmentation, rng 0), :math:`G_s*u` for ``PRIOR_SCALES`` and, per channel c, the
    intensity relative to u's two phases, :math:`z_c=(f_c-\mu_{0,c})/(\mu_{1,c}-\mu_{0,c})`
    (smoothed at 1 px, clipped to [-2, 3]; 0 where the phases differ by < 0.02): 0 on the
    background, 1 on the object whatever the exposure, polarity or stain, so one training
    image transfers to images of another kind. float32 (*spatial, 3 + C); u is
    :func:`no_label_mask`."""
    from scipy import ndimage as ndi

    u = no_label_mask(arr, cax).astype(np.float32)
    chans = [u, *(ndi.gaussian_filter(u, s) for s in PRIOR_SCALES)]
    f = _scaled01(arr, cax)
    inside = u > 0.5
    for c in range(f.shape[-1]):
        fc = f[..., c]
        if inside.any() and (~inside).any():
            mu0, mu1 = float(fc[~inside].mean()), float(fc[inside].mean())
        else:
            mu0 = mu1 = 0.0
        d = mu1 - mu0
        z = (fc - mu0) / d if abs(d) > 0.02 else np.zeros_like(fc)
        chans.append(np.clip(ndi.gaussian_filter(z, 1.0), -2.0, 3.0).astype(np.float32))
    return np.stack(chans, axis=-1)


def _prior_labels(extra: np.ndarray) -> np.ndarray:
    """The no-label object mask as labels (intp 0/1) from :func:`prior_channels`' output."""
    return (extra[..., 0] > 0.5).astype(np.intp)


def _follow_flag(value: Any, prior: Any, classes: int) -> bool:
    """``follow_prior`` checked: a bool, True only for a binary model with ``prior="default"``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"follow_prior must be True or False; got {value!r}.")
    if value and (prior != "default" or classes != 2):
        raise ValueError("follow_prior=True needs a two-class model fitted with the no-label "
                         f"prior (prior='default'); this one has {classes} classes and "
                         f"prior={prior!r}.")
    return bool(value)


def _scaled01(arr: np.ndarray, cax: int | None) -> np.ndarray:
    """(*spatial, C) float32: integers by dtype range, floats as they are; RGB(A) -> RGB."""
    from ..._validate import to_float01

    a = np.asarray(arr)
    if cax is None:
        a = a[..., None]
    elif a.shape[-1] == 4:
        a = a[..., :3]
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        return to_float01(a).astype(np.float32)
    return a.astype(np.float32)


def _param(name: str) -> Param:
    """The registered heat method's Param ``name`` (the one schema; no import of the package)."""
    from .._registry import get_method

    return get_method("heat").param(name)


def _adapt(logp, border, M, lab, *, tau, lam, adapt, spacing, rng, workers):
    """Fit one colour mixture per class on this image's partition ``lab``, add ``adapt`` times
    its log-likelihood (and, binary, the border prior) to the learned log-probabilities and
    descend again: the no-label model's region competition, started from the learned result."""
    from ..._regions import COMPONENTS, PhaseMixtures, _log_density, em_steps, seed_mixture

    K = logp.shape[-1]
    X = M.reshape(-1, M.shape[-1])
    base = logp.copy()
    if K == 2:
        base[..., 1] += np.float32(adapt * ADAPT_BORDER_PRIOR) * (border - 0.5)
    phases = PhaseMixtures(COMPONENTS, ADAPT_MAX_FIT, rng) if K == 2 else None
    for _ in range(ADAPT_ROUNDS):
        flat = lab.reshape(-1)
        if np.bincount(flat, minlength=K).min() < 2 * COMPONENTS:
            break
        if phases is not None:  # binary: the no-label model's warm-started phase mixtures
            phases.fit(X, flat)
            odds = phases.log_odds(X).astype(np.float32).reshape(base.shape[:-1])
            total = base.copy()
            total[..., 1] += np.float32(adapt) * odds
            new, _ = descend(total, tau=tau, lam=lam, spacing=spacing, workers=workers)
            if np.array_equal(new, lab):
                break
            lab = new
            continue
        ll = np.empty((X.shape[0], K), np.float32)
        for k in range(K):
            idx = np.flatnonzero(flat == k)
            if idx.size > ADAPT_MAX_FIT:
                idx = rng.choice(idx, ADAPT_MAX_FIT, replace=False)
            # scikit-learn's GaussianMixture(diag, k-means++, max_iter=10, tol=1e-2,
            # reg_covar=1e-2, random_state=seed).fit(...).score_samples(X) as the vectorised
            # equivalents of physeg._regions (same iterates; the density to 1e-4 in float32):
            # 0.5 of 1.9 s on a 512² three-class image was scikit-learn's float64 scoring
            gm = em_steps(seed_mixture(X[idx], COMPONENTS, int(rng.integers(2**31 - 1))),
                          X[idx], max_iter=10, tol=1e-2, reg_covar=1e-2)
            ll[:, k] = _log_density(gm, X)
        total = base + np.float32(adapt) * ll.reshape(base.shape)
        new, _ = descend(total, tau=tau, lam=lam, spacing=spacing, workers=workers)
        if np.array_equal(new, lab):
            break
        lab = new
    return lab


def fit_learned(images: Sequence[Any], masks: Sequence[Any], *, unlabelled: int | None,
                samples: int, trees: int, depth: int, adapt: float | None, border_feature: bool,
                prior: str = "default", tau: float | None = None, lam: float | None = None,
                prior_weight: float | None = None, rng: Any = None,
                progress: Progress | None = None) -> LearnedHeatModel:
    """Learn p(k | x) on ``images`` / ``masks``; see :func:`physeg.families.heat.fit_heat`.

    ``adapt`` / ``prior_weight`` None: chosen here (:data:`ADAPT_ONE`,
    :data:`PRIOR_WEIGHT_ONE` for one image; else by :func:`_cross_validate`).
    """
    from ..._features import LearnedLikelihood, TrainingRows

    gen = as_rng(rng)
    arrs, labs, axes = check_training_pairs(images, masks, allow_3d=True)
    t0, c0 = time.perf_counter(), time.process_time()
    extras = [prior_channels(a, c) for a, c in zip(arrs, axes, strict=True)] \
        if prior == "default" else None
    rows = TrainingRows.sample(arrs, labs, axes, unlabelled=unlabelled, samples=samples,
                               border=border_feature, rng=gen, progress=progress, extras=extras)
    n = len(arrs)
    if progress is not None:
        progress(n, n + 1, f"random forest on {sum(x.shape[0] for x in rows.X)} pixels, "
                           f"{rows.X[0].shape[1]} features")
    lik = LearnedLikelihood.from_rows(rows, range(n), trees=trees, depth=depth, rng=gen)
    tau = LEARNED_TAU if tau is None else float(tau)
    lam = LEARNED_LAM if lam is None else float(lam)
    if prior != "default":
        prior_weight = 0.0
    cv, follow, prior_dice = None, False, None
    # the no-label result itself is a candidate where it is one (binary, its prior, the
    # weight not given): then labels can only leave it in place or improve on it
    may_follow = prior_weight is None and len(lik.values) == 2
    if adapt is None or prior_weight is None:
        if n == 1:  # nothing to cross-validate on: the development-measured values
            adapt = ADAPT_ONE if adapt is None else adapt
            if prior_weight is None:
                # scaled by how well the no-label result fits the labelled image (0 below
                # Dice 0.5, the full weight from 0.8): the labels' truth is known, so a
                # no-label model that fails there (texture, a wrong object) is not trusted,
                # and one that fits it (FOLLOW_DICE_ONE) is kept as it is
                prior_dice = _score(_prior_labels(extras[0]),
                                    np.where(rows.classes[0] > 0, 1, rows.classes[0]), 2)
                prior_weight = PRIOR_WEIGHT_ONE * float(np.clip((prior_dice - 0.5) / 0.3,
                                                                0.0, 1.0))
                follow = may_follow and prior_dice >= FOLLOW_DICE_ONE
        else:
            cv = _cross_validate(arrs, axes, rows, extras, trees=min(trees, CV_TREES),
                                 depth=depth, tau=tau, lam=lam,
                                 adapts=ADAPTS if adapt is None else (float(adapt),),
                                 weights=PRIOR_WEIGHTS if prior_weight is None
                                 else (float(prior_weight),), follow=may_follow,
                                 rng=np.random.default_rng(int(gen.integers(2**63 - 1))))
            adapt, prior_weight, follow = cv["adapt"], cv["prior_weight"], cv["follow_prior"]
    if progress is not None:
        progress(n + 1, n + 1, "random forest trained")
    params = {"tau": tau, "lam": lam, "adapt": float(adapt), "prior": prior,
              "prior_weight": float(prior_weight), "follow_prior": bool(follow)}
    info = {"learn": "features", "class_values": lik.values.tolist(), "layout": lik.layout,
            "ndim": lik.ndim, "n_train": n, "unlabelled": unlabelled,
            "samples": samples, "trees": trees, "depth": depth,
            "n_features": lik.forest.n_features, "nodes": int(lik.forest.arrays["offsets"][-1]),
            **({} if cv is None else {"cross_validation": cv["table"]}),
            **({} if prior_dice is None else {"prior_dice": prior_dice}),
            "fit_seconds": time.perf_counter() - t0, "fit_cpu_seconds": time.process_time() - c0}
    return LearnedHeatModel(lik, params, info)


def _cross_validate(arrs, axes, rows, extras, *, trees, depth, tau, lam, adapts, weights,
                    follow, rng):
    """Choose (adapt, prior_weight, follow_prior) by the held-out score of the whole pipeline.

    The training images are split into ``min(n, CV_FOLDS)`` folds (a seeded permutation, image
    j of it in fold j mod folds); each fold's images are segmented by a forest of ``trees``
    trees trained on the other folds' sampled rows (no feature is computed twice for
    training), with every candidate pair; the score is the mean over at most ``CV_MAX_EVAL``
    held-out images of Dice of label 1 (binary) or the mean IoU of labels 1..K-1, on the
    labelled pixels. ``follow``: the no-label result (``extras[i][..., 0]``, needing no
    forest) is the last candidate, so it wins only with a strictly better score. The best
    mean wins; ties go to the smaller weight, then the smaller adapt (the simpler model).
    Only training images and their masks are used.
    """
    from ..._features import LearnedLikelihood

    n = len(arrs)
    folds = min(n, CV_FOLDS)
    order = rng.permutation(n)
    fold_of = np.empty(n, np.intp)
    fold_of[order] = np.arange(n) % folds
    evaluate = set(order[:CV_MAX_EVAL].tolist())
    cands = [(a, w) for w in weights for a in adapts]
    scores = np.zeros(len(cands) + 1)
    for f in range(folds):
        held = [i for i in range(n) if fold_of[i] == f and i in evaluate]
        if not held:
            continue
        lik = LearnedLikelihood.from_rows(rows, [i for i in range(n) if fold_of[i] != f],
                                          trees=trees, depth=depth, rng=rng)
        for i in held:
            extra = None if extras is None else extras[i]
            logp, border, mix = lik.log_proba(arrs[i], axes[i], with_border=True, extra=extra)
            truth = rows.classes[i]
            spacing = (1.0,) * truth.ndim
            for c, (a, w) in enumerate(cands):
                lab = segment_posterior(logp, border, mix,
                                        None if extra is None else extra[..., 1], tau=tau,
                                        lam=lam, adapt=a, prior_weight=w, spacing=spacing,
                                        rng=as_rng(0))
                scores[c] += _score(lab, truth, logp.shape[-1])
            if follow:
                scores[-1] += _score(_prior_labels(extra), truth, 2)
    m = max(1, len(evaluate))
    table = [{"adapt": a, "prior_weight": w, "score": float(v / m)}
             for (a, w), v in zip(cands, scores, strict=False)]
    if follow:
        table.append({"follow_prior": True, "score": float(scores[-1] / m)})
    # argmax keeps the first of equals (the simpler pair), stored with follow_prior too
    best = int(np.argmax(scores[:len(cands)]))
    return {"adapt": cands[best][0], "prior_weight": cands[best][1],
            "follow_prior": bool(follow and scores[-1] > scores[best]), "table": table}


def _score(lab: np.ndarray, truth: np.ndarray, K: int) -> float:
    """Dice of label 1 (K = 2) or mean IoU of labels 1..K-1, on the labelled pixels."""
    known = truth >= 0
    a, b = lab[known], truth[known]
    if K == 2:
        x, y = a == 1, b == 1
        denom = int(x.sum()) + int(y.sum())
        return 2.0 * float((x & y).sum()) / denom if denom else 1.0
    ious = []
    for k in range(1, K):
        x, y = a == k, b == k
        union = int((x | y).sum())
        ious.append(float((x & y).sum()) / union if union else 1.0)
    return float(np.mean(ious))


def learned_from_dict(data: dict[str, Any]) -> LearnedHeatModel:
    """The model of :meth:`LearnedHeatModel.to_dict` (every array checked; no code run)."""
    from ..._features import LearnedLikelihood

    state = data.get("state")
    if not isinstance(state, dict) or "learned" not in state:
        raise ValueError("no 'learned' state")
    lik = LearnedLikelihood.from_state(state["learned"])
    raw = data.get("params", {})
    params = {}
    for key in ("tau", "lam", "adapt", "prior"):
        if key not in raw:
            raise ValueError(f"the learned model's params lack {key!r}")
        params[key] = _param(key).convert(raw[key])
    # files written before the prior weight / the follow flag existed used neither
    params["prior_weight"] = _param("prior_weight").convert(raw.get("prior_weight", 0.0))
    for key in ("tau", "lam", "adapt", "prior_weight"):
        if params[key] is None:
            raise ValueError(f"the learned model's {key!r} is not set")
    if (params["prior"] == "default") != (lik.n_extra > 0):
        raise ValueError("the prior setting does not match the forest's features")
    params["follow_prior"] = _follow_flag(raw.get("follow_prior", False), params["prior"],
                                          len(lik.values))
    return LearnedHeatModel(lik, params, data.get("info", {}))
