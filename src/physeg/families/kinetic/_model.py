"""The kinetic family's parameter schema and its fitted model (shared by segment and fit).

Kept apart from :mod:`physeg.families.kinetic` so that the CBO fit (:mod:`._fit`) can build a
:class:`KineticModel` and read the schema's defaults without importing the package that
imports it (no import cycle). The schema is the single source of defaults and ranges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._features import LEARN_PARAM_SPECS
from ..._foreground import FOREGROUND_RULES, OBJECT_RULES
from .._registry import Model, Param

__all__ = ["SEGMENT_PARAMS", "FIT_PARAMS", "KineticModel"]

SEGMENT_PARAMS = (
    Param("classes", "int", 2, "number of labels K (wells at 0..1); 2 = object and background",
          low=2, high=8),
    Param("delta", "float", 0.3, "confidence threshold Delta; larger = more spatial aggregation",
          low=0.0, high=1.8),
    Param("sigma", "float", 0.1, "spatial diffusion; larger = positions spread more",
          low=0.0, high=2.0),
    Param("radius", "float", 0.06, "local-average radius r (image side = 2); larger = smoother",
          low=0.005, high=1.0),
    Param("barriers", "str", None,
          "well barrier(s) cbar: none = the phases' midpoint (K=2) / multi-Otsu (K>=3), "
          "'otsu', or 'a,b,..' (0.5: the seed's)"),
    Param("eps", "float", 0.05, "interaction strength epsilon of the spatial binary rule",
          low=1e-4, high=1.0),
    Param("dt", "float", 0.1, "time step (auto-reduced to the admissibility bounds)",
          low=1e-4, high=1.0),
    Param("t_final", "float", 4.0, "final time T; larger = more denoising", low=0.01, high=100.0),
    Param("space_rate", "float", 0.05, "aggregation rate lambda_x; high rates hurt masks",
          low=0.0, high=100.0),
    Param("transport_rate", "float", 20.0, "feature transport rate lambda_T; more = smoother",
          low=0.0, high=1000.0),
    Param("binarise_rate", "float", 0.5, "binarisation rate lambda_B; more = earlier threshold",
          low=0.0, high=100.0),
    Param("feature_update", "str", "mean", "mean-field or literal Nanbu feature updates",
          choices=("mean", "nanbu")),
    Param("runs", "int", 1, "independent DSMC runs averaged before read-out", low=1, high=100),
    Param("readout", "int", 5, "read-out window (odd, pixels): each pixel takes the majority "
          "label of the window around it; 1 = its own particle's well (the paper); larger = "
          "fewer stray pixels, rounder corners, thin structures lost", low=1, high=15, odd=True),
    Param("fidelity", "str", "auto", "particle feature: means (the image's intensities), "
          "mixtures (the posterior of two phase mixtures, + border prior for colour; K = 2) or "
          "auto (mixtures for a binary colour image, or a grey image of many objects such as "
          "nuclei, means otherwise)",
          choices=("auto", "means", "mixtures")),
    Param("foreground", "str", "auto", "which phase is label 1: auto (the one holding less of "
          "the image border), bright or dark; K > 2: label 0 = background",
          choices=FOREGROUND_RULES),
    Param("objects", "str", "all", "all objects, or one: the largest connected object with its "
          "holes filled (binary)", choices=OBJECT_RULES),
)

FIT_PARAMS = (
    Param("loss", "str", "dice", "fit loss: dice (particle-model masks), l2 (paper, macro "
          "histogram), mixed (sum)", choices=("dice", "l2", "mixed")),
    Param("n_agents", "int", 16, "CBO agents", low=2, high=1000),
    Param("max_iter", "int", 20, "CBO iterations", low=1, high=10000),
    Param("fit_size", "int", 64, "training images are resized to at most this side", low=8,
          high=4096),
    Param("n_bins", "int", 50, "feature cells of the macroscopic model", low=8, high=1000),
    Param("rng", "int", None, "seed of the CBO agents and DSMC runs", low=0, high=2**63 - 1),
    Param("likelihood", "str", "none", "none: CBO fit of theta on the image features; learned: "
          "a random forest's posterior p(class | multiscale features) as the particles' "
          "feature (theta kept)", choices=("none", "learned")),
    *(Param(**spec) for spec in LEARN_PARAM_SPECS),
)

#: fit parameters of likelihood="learned" only
LEARNED_ONLY = ("likelihood", *(spec["name"] for spec in LEARN_PARAM_SPECS))


class KineticModel(Model):
    """Fitted kinetic model: theta = (Delta, sigma, r, barriers) plus the fixed settings.

    ``predict(image)`` runs the particle model with the fitted parameters; ``info`` holds the
    loss used, its final value and the CBO history. Saved as JSON by :meth:`Model.save`.
    """

    def __init__(self, params: dict[str, Any], info: dict[str, Any] | None = None):
        super().__init__("kinetic", params, info)

    def predict(
        self, image: np.ndarray, *, channel_axis: int | None = None, **kwargs
    ) -> np.ndarray:
        """Segment ``image`` with the fitted parameters (``kwargs`` override them, e.g. rng)."""
        return super().predict(image, channel_axis=channel_axis, **kwargs)
