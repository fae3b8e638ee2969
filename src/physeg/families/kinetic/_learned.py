r"""Kinetic fit with a learned likelihood: the forest's posterior as the particles' feature.

``physeg.fit("kinetic", images, masks, likelihood="learned")`` trains the random forest of
:mod:`physeg._features` (multiscale colour / intensity / edge / texture features + the border
geodesic distance) on the labelled pixels, instead of identifying θ by CBO on the raw image
features. The particles then carry the learned posterior as their feature:

.. math::

    c_i = p(1\mid x_i)\in[0,1] \quad (K = 2),\qquad
    c_i = \frac{1}{K-1}\sum_k k\,p(k\mid x_i) \quad (K \ge 3),

(the K-class feature is the expected class position, so the K wells at :math:`k/(K-1)` are
the classes and the barriers lie half-way between them), and the kinetic model (bounded-
confidence aggregation, local averaging, double/multi-well binarisation) regularises it, as
heat's perimeter regularises :math:`-\log p`. θ = (Δ, σ, r) keeps the defaults of
:func:`physeg.families.kinetic.segment_kinetic` (overridable as fit parameters): on a clean
posterior the wells sit at 0 and 1 and the barrier is 1/2, so there is nothing left for CBO
to identify that the forest did not learn.

Labels: as heat's learned fit, class k (the k-th distinct mask value other than
``unlabelled``) is label k.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ..._validate import as_rng, check_image, check_training_pairs
from ._model import SEGMENT_PARAMS, KineticModel

__all__ = ["LearnedKineticModel", "fit_learned", "learned_from_dict"]

_THETA = ("delta", "sigma", "radius", "eps", "dt", "t_final", "space_rate", "transport_rate",
          "binarise_rate", "feature_update", "runs", "readout")


class LearnedKineticModel(KineticModel):
    """A kinetic model whose particles carry a learned posterior (see the module notes)."""

    def __init__(self, likelihood: Any, params: dict[str, Any],
                 info: dict[str, Any] | None = None):
        super().__init__(params, info)
        self.likelihood = likelihood

    def state(self) -> dict[str, Any]:
        return {"learned": self.likelihood.to_state()}

    def predict(self, image: Any, *, channel_axis: int | None = None, rng: Any = None,
                **kwargs: Any) -> np.ndarray:
        """Labels 0..K-1 of a 2D image; ``rng`` seeds the particles (None = seed 0).

        ``kwargs`` may override the model settings in ``params`` (Δ, σ, r, rates, T, runs,
        readout).
        """
        from ._dsmc import KineticParams, run_particle_model
        from ._multiwell import window_majority

        schema = {p.name: p for p in SEGMENT_PARAMS}
        params = dict(self.params)
        for key, value in kwargs.items():
            if key not in _THETA:
                raise ValueError(f"a learned kinetic model takes {list(_THETA)}; got {key!r}.")
            v = schema[key].convert(value)
            params[key] = schema[key].default if v is None else v
        arr = check_image(image, channel_axis=channel_axis, allow_3d=False, allow_channels=True)
        cax = -1 if channel_axis is not None else None
        logp = self.likelihood.log_proba(arr, cax)
        p = np.exp(logp.astype(np.float64))
        p /= p.sum(axis=-1, keepdims=True)
        K = p.shape[-1]
        feat = p[..., 1] if K == 2 else p @ (np.arange(K) / (K - 1))
        barriers = ((np.arange(K - 1) + 0.5) / (K - 1))[None, :]
        kp = KineticParams(
            delta=params["delta"], sigma=params["sigma"], radius=params["radius"],
            barriers=barriers, classes=K, eps=params["eps"], dt=params["dt"],
            t_final=params["t_final"], space_rate=params["space_rate"],
            transport_rate=params["transport_rate"], binarise_rate=params["binarise_rate"],
            feature_update=params["feature_update"])
        labels, _ = run_particle_model(feat[..., None], kp, as_rng(0 if rng is None else rng),
                                       runs=int(params["runs"]))
        return window_majority(labels, K, int(params["readout"])).astype(np.uint8)


def fit_learned(images: Sequence[Any], masks: Sequence[Any], *, unlabelled: int | None,
                samples: int, trees: int, depth: int, border_feature: bool, rng: Any,
                progress: Callable[[int, int | None, str], None] | None = None,
                **fixed: Any) -> LearnedKineticModel:
    """Train the likelihood on ``images`` / ``masks``; ``fixed`` = kinetic settings to keep."""
    from ..._features import LearnedLikelihood

    unknown = sorted(set(fixed) - set(_THETA) - {"classes"})
    if unknown:
        raise ValueError(f"likelihood='learned' keeps the settings {list(_THETA)}; {unknown} "
                         "belong to the CBO fit (likelihood='none').")
    arrs, labs, axes = check_training_pairs(images, masks, allow_3d=False)
    t0, c0 = time.perf_counter(), time.process_time()
    lik = LearnedLikelihood.fit(arrs, labs, axes, unlabelled=unlabelled, samples=samples,
                                trees=trees, depth=depth, border=border_feature,
                                rng=as_rng(0 if rng is None else rng), progress=progress)
    if progress is not None:
        progress(len(arrs) + 1, len(arrs) + 1, "random forest trained")
    if lik.values.size > 8:
        raise ValueError(f"the kinetic model has at most 8 wells; the masks hold "
                         f"{lik.values.size} classes.")
    if fixed.get("classes") not in (None, lik.values.size):
        raise ValueError(f"classes={fixed['classes']} but the masks hold {lik.values.size} "
                         "classes; drop classes (the masks decide it).")
    defaults = {p.name: p.default for p in SEGMENT_PARAMS}
    params = {k: (fixed[k] if fixed.get(k) is not None else defaults[k]) for k in _THETA}
    params["classes"] = int(lik.values.size)
    info = {"likelihood": "learned", "class_values": lik.values.tolist(), "layout": lik.layout,
            "n_train": len(arrs), "unlabelled": unlabelled, "samples": samples, "trees": trees,
            "depth": depth, "fit_seconds": time.perf_counter() - t0,
            "fit_cpu_seconds": time.process_time() - c0}
    return LearnedKineticModel(lik, params, info)


def learned_from_dict(data: dict[str, Any]) -> LearnedKineticModel:
    """The model of :meth:`LearnedKineticModel.to_dict` (every array checked; no code run)."""
    from ..._features import LearnedLikelihood

    lik = LearnedLikelihood.from_state(data["state"]["learned"])
    if lik.ndim != 2:
        raise ValueError("a learned kinetic model is 2D")
    schema = {p.name: p for p in SEGMENT_PARAMS}
    raw = data.get("params", {})
    params = {}  # (a file without "readout" gets 1 from the package's loader)
    for key in _THETA:
        if key not in raw:
            raise ValueError(f"the learned kinetic model's params lack {key!r}")
        params[key] = schema[key].convert(raw[key])
    params["classes"] = int(lik.values.size)
    return LearnedKineticModel(lik, params, data.get("info", {}))
