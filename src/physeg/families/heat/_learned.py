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
from ._mbo import heat_multiplier, heat_step

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
_MAX_ITER = 200

LEARNED_FIT_PARAMS: tuple[Param, ...] = (
    Param("learn", "str", "features", "fit: features (learn p(class | pixel features) with a "
          "random forest; fidelity -log p) or grid (search tau, lam of the no-label model)",
          choices=("features", "grid")),
    *(Param(**spec) for spec in LEARN_PARAM_SPECS),
    Param("adapt", "float", ADAPT, "weight of the per-image colour mixtures re-fitted on the "
          "learned partition and of the border prior (binary; 0 = the learned likelihood "
          "alone)", low=0.0, high=100.0),
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
    """Threshold dynamics on the fidelity ``-logp`` (*spatial, K); returns (labels, steps)."""
    spatial = logp.shape[:-1]
    K = logp.shape[-1]
    lab = np.argmax(logp, axis=-1) if start is None else start
    if lam <= 0:
        return lab.astype(np.intp), 0
    mult = heat_multiplier(spatial, tau, spacing)
    beta = np.float32(2.0 * lam / math.sqrt(tau))
    steps = 0
    if K == 2:
        odds = logp[..., 1] - logp[..., 0]
        v = lab == 1
        for _ in range(max_iter):
            psi = heat_step(v[None].astype(np.float32), mult, workers=workers)[0]
            new = odds + beta * (2.0 * psi - 1.0) > 0
            steps += 1
            if np.array_equal(new, v):
                break
            v = new
        return v.astype(np.intp), steps
    for _ in range(max_iter):
        onehot = np.stack([lab == k for k in range(K)]).astype(np.float32)
        psi = heat_step(onehot, mult, workers=workers)
        new = np.argmax(logp + beta * np.moveaxis(psi, 0, -1), axis=-1)
        steps += 1
        if np.array_equal(new, lab):
            break
        lab = new
    return lab.astype(np.intp), steps


class LearnedHeatModel(Model):
    """``physeg.fit("heat", ...)`` with ``learn="features"``: forest likelihood + heat perimeter.

    ``predict(image)`` returns labels 0..K-1 (class k = the k-th mask value); ``params`` hold
    ``tau``, ``lam``, ``adapt``; ``state()`` the forest as checked arrays (no pickle).
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

        ``kwargs`` may override ``tau``, ``lam`` and ``adapt`` (checked by their Params);
        ``rng`` draws the pixels the per-image mixtures are fitted on (``adapt > 0``; None =
        seed 0, so the same image always gives the same labels).
        ``return_proba=True`` returns the forest's fractions (*spatial, K) instead.
        """
        params = dict(self.params)
        for key, value in kwargs.items():
            if key not in ("tau", "lam", "adapt"):
                raise ValueError(f"a learned heat model takes tau, lam and adapt; got {key!r}.")
            p = _param(key)
            v = p.convert(value)
            params[key] = p.default if v is None else v
        arr = check_image(image, channel_axis=channel_axis, allow_3d=True, allow_channels=True)
        cax = -1 if channel_axis is not None else None
        spatial = arr.shape[:-1] if cax is not None else arr.shape
        if spacing is None:
            spacing = (1.0,) * len(spatial)
        spacing = tuple(float(s) for s in np.atleast_1d(spacing))
        if len(spacing) != len(spatial) or min(spacing) <= 0:
            raise ValueError(f"spacing must give one positive size per spatial axis "
                             f"({len(spatial)}); got {spacing}.")
        tau, lam, adapt = params["tau"], params["lam"], params["adapt"]
        extra = prior_channels(arr, cax) if params.get("prior") == "default" else None
        if return_proba:
            return np.exp(self.likelihood.log_proba(arr, cax, extra=extra))
        if adapt > 0:
            logp, border, mix = self.likelihood.log_proba(arr, cax, with_border=True,
                                                          extra=extra)
        else:
            logp = self.likelihood.log_proba(arr, cax, extra=extra)
        lab, _ = descend(logp, tau=tau, lam=lam, spacing=spacing, workers=workers)
        if adapt > 0:
            lab = _adapt(logp, border, mix, lab, tau=tau, lam=lam, adapt=adapt,
                         spacing=spacing, rng=as_rng(0 if rng is None else rng),
                         workers=workers)
        K = logp.shape[-1]
        return lab.astype(np.uint8 if K <= 255 else np.int32)


def prior_channels(arr: np.ndarray, cax: int | None) -> np.ndarray:
    r"""The no-label model's opinion as features: its object mask u (the binary default
    ``heat`` segmentation, rng 0), :math:`G_s*u` for ``PRIOR_SCALES`` and, per channel c, the
    intensity relative to u's two phases, :math:`z_c=(f_c-\mu_{0,c})/(\mu_{1,c}-\mu_{0,c})`
    (smoothed at 1 px, clipped to [-2, 3]; 0 where the phases differ by < 0.02): 0 on the
    background, 1 on the object whatever the exposure, polarity or stain, so one training
    image transfers to images of another kind. float32 (*spatial, 3 + C). The registered
    method is called through the registry (this module may not import its package)."""
    from scipy import ndimage as ndi

    from .._registry import get_method

    m = get_method("heat")
    lab = m.func(arr, channel_axis=cax, spacing=None, rng=0, **{**m.defaults(), "classes": 2})
    u = (np.asarray(lab) == 1).astype(np.float32)
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
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from ..._regions import COMPONENTS, PhaseMixtures

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
            gm = GaussianMixture(COMPONENTS, covariance_type="diag", reg_covar=1e-2, tol=1e-2,
                                 max_iter=10, random_state=int(rng.integers(2**31 - 1)),
                                 init_params="k-means++")
            with warnings.catch_warnings():  # a few EM steps per round, on purpose
                warnings.simplefilter("ignore", ConvergenceWarning)
                ll[:, k] = gm.fit(X[idx]).score_samples(X)
        total = base + np.float32(adapt) * ll.reshape(base.shape)
        new, _ = descend(total, tau=tau, lam=lam, spacing=spacing, workers=workers)
        if np.array_equal(new, lab):
            break
        lab = new
    return lab


def fit_learned(images: Sequence[Any], masks: Sequence[Any], *, unlabelled: int | None,
                samples: int, trees: int, depth: int, adapt: float, border_feature: bool,
                prior: str = "default", tau: float | None = None, lam: float | None = None,
                rng: Any = None, progress: Progress | None = None) -> LearnedHeatModel:
    """Learn p(k | x) on ``images`` / ``masks``; see :func:`physeg.families.heat.fit_heat`."""
    from ..._features import LearnedLikelihood

    gen = as_rng(rng)
    arrs, labs, axes = check_training_pairs(images, masks, allow_3d=True)
    t0, c0 = time.perf_counter(), time.process_time()
    extras = [prior_channels(a, c) for a, c in zip(arrs, axes, strict=True)] \
        if prior == "default" else None
    lik = LearnedLikelihood.fit(arrs, labs, axes, unlabelled=unlabelled, samples=samples,
                                trees=trees, depth=depth, border=border_feature, rng=gen,
                                progress=progress, extras=extras)
    if progress is not None:
        progress(len(arrs) + 1, len(arrs) + 1, "random forest trained")
    params = {"tau": LEARNED_TAU if tau is None else float(tau),
              "lam": LEARNED_LAM if lam is None else float(lam), "adapt": float(adapt),
              "prior": prior}
    info = {"learn": "features", "class_values": lik.values.tolist(), "layout": lik.layout,
            "ndim": lik.ndim, "n_train": len(arrs), "unlabelled": unlabelled,
            "samples": samples, "trees": trees, "depth": depth,
            "n_features": lik.forest.n_features, "nodes": int(lik.forest.arrays["offsets"][-1]),
            "fit_seconds": time.perf_counter() - t0, "fit_cpu_seconds": time.process_time() - c0}
    return LearnedHeatModel(lik, params, info)


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
    if (params["prior"] == "default") != (lik.n_extra > 0):
        raise ValueError("the prior setting does not match the forest's features")
    return LearnedHeatModel(lik, params, data.get("info", {}))
