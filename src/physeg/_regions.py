r"""Region models beyond means: colour/texture features, mixtures per phase, the border prior.

Shared by the no-label region models of ``heat`` (threshold dynamics with a mixture
fidelity) and ``kinetic`` (the mixtures' posterior as the particles' feature), which may not
import each other.

Features (:func:`region_features`)
    CIELAB for colour images (perceptually uniform, so one covariance scale fits all hues;
    scikit-image's ``rgb2lab``), the intensity for grey ones, both divided by 10 (L* spans
    0..100), plus a texture channel: the local standard deviation of the lightness at scale
    ``texture_sigma`` (Gaussian window), which separates a smooth coat from grass or skin
    pores from a lesion.
Phase models (:class:`PhaseMixtures`)
    one Gaussian mixture per phase (scikit-learn, diagonal covariances: as accurate as full ones
    on the development images and several times faster), fitted on at most ``max_fit`` pixels
    drawn per phase and re-estimated from the current partition, warm-started from the
    previous fit; the fidelity of phase k is :math:`-\log p_k(f(x))` (nats), the region
    competition / GrabCut data term.
Object prior (:func:`border_geodesic`)
    the geodesic distance from the image border with the local contrast as the cost,
    :math:`D(x) = \min_{\gamma:\partial\Omega\to x}\int_\gamma (|\nabla f|/\overline{|\nabla f|}
    + \epsilon)\,ds` (scikit-image's ``MCP_Geometric``), divided by its 99th percentile. Pixels
    reached from the border through homogeneous regions are background-like; an object is
    enclosed by contrast. This is the boundary-connectivity prior of salient-object detection
    (Zhu et al., CVPR 2014), the "phase that holds less of the border" of
    :mod:`physeg._foreground` made spatial. It initialises the partition (Otsu threshold of
    D: no box, no clicks) and adds :math:`w\,(D - 1/2)` nats in favour of the object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validate import to_float01

#: defaults shared by heat and kinetic: Gaussians per phase, pixels drawn per fit, prior weight
COMPONENTS = 5
MAX_FIT = 4000
BORDER_PRIOR = 20.0

__all__ = ["COMPONENTS", "MAX_FIT", "BORDER_PRIOR", "region_features", "border_geodesic",
           "PhaseMixtures", "prior_partition", "is_colour"]


def is_colour(image: np.ndarray, channel_axis: int | None) -> bool:
    """True for an RGB(A) image whose colour channels differ (a grey image stored as RGB,
    as most fluorescence micrographs are, is not colour: its R, G and B are equal)."""
    arr = np.asarray(image)
    if channel_axis is None or arr.shape[-1] not in (3, 4):
        return False
    rgb = arr[..., :3]
    spread = float(np.max(rgb.max(axis=-1).astype(np.float64) - rgb.min(axis=-1)))
    value_range = float(np.ptp(rgb)) or 1.0
    return spread > 0.02 * value_range


def region_features(image: np.ndarray, channel_axis: int | None, *,
                    texture_sigma: float = 2.0) -> np.ndarray:
    """float32 features (*spatial, F): Lab/10 (colour) or intensity/10-scale (grey) + texture.

    Grey images are mapped to [0, 10] by their own range (robust 0.5/99.5 percentiles), so
    they share the colour features' scale; colour images go through ``to_float01`` (dtype
    range) and CIELAB. ``channel_axis`` is -1 or None (as after ``check_image``).
    """
    from scipy import ndimage as ndi

    arr = np.asarray(image)
    if channel_axis is not None and arr.shape[-1] in (3, 4):
        from skimage.color import rgb2lab

        lab = rgb2lab(to_float01(arr[..., :3]).astype(np.float64)) / 10.0
        feats = [lab[..., c] for c in range(3)]
        lightness = lab[..., 0]
    else:
        grey = arr.astype(np.float64)
        if channel_axis is not None:
            grey = grey.mean(axis=-1)
        lo, hi = np.percentile(grey, [0.5, 99.5])
        lightness = 10.0 * (grey - lo) / (hi - lo if hi > lo else 1.0)
        feats = [lightness]
    if texture_sigma > 0:
        mean = ndi.gaussian_filter(lightness, texture_sigma)
        var = ndi.gaussian_filter(lightness**2, texture_sigma) - mean**2
        feats.append(np.sqrt(np.clip(var, 0.0, None)))
    return np.stack(feats, axis=-1).astype(np.float32)


def border_geodesic(features: np.ndarray, *, sigma: float = 2.0, eps: float = 0.05) -> np.ndarray:
    """Contrast-weighted geodesic distance from the image border, normalised to ~[0, 1].

    The cost is the gradient magnitude of the Gaussian-smoothed features (scale ``sigma``,
    summed over feature channels) divided by its mean, plus ``eps`` (so distances grow, slowly,
    inside homogeneous regions too). Returns float32 of the spatial shape; 1 ≈ the 99th
    percentile of the distances.
    """
    from scipy import ndimage as ndi
    from skimage.graph import MCP_Geometric

    spatial = features.shape[:-1]
    grad2 = np.zeros(spatial)
    for c in range(features.shape[-1]):
        smooth = ndi.gaussian_filter(features[..., c].astype(np.float64), sigma)
        grad2 += sum(g**2 for g in np.gradient(smooth))
    grad = np.sqrt(grad2)
    cost = grad / (grad.mean() + 1e-12) + eps
    border = np.zeros(spatial, bool)
    for axis, n in enumerate(spatial):
        index = [slice(None)] * len(spatial)
        for edge in (0, n - 1):
            index[axis] = edge
            border[tuple(index)] = True
    dist, _ = MCP_Geometric(cost).find_costs(np.argwhere(border))
    scale = np.percentile(dist, 99)
    return (dist / (scale if scale > 0 else 1.0)).astype(np.float32)


def prior_partition(geodesic: np.ndarray) -> np.ndarray:
    """Initial object mask: Otsu's threshold of the border geodesic distance."""
    from skimage.filters import threshold_otsu

    if float(geodesic.max()) == float(geodesic.min()):
        raise ValueError("the image is constant (no contrast anywhere); there is no object "
                         "to find. Check that the right image or channel_axis was passed.")
    return geodesic > threshold_otsu(geodesic)


class PhaseMixtures:
    """One diagonal Gaussian mixture per phase, re-fitted from a partition (warm-started).

    Parameters
    ----------
    components : int
        Gaussians per phase (GrabCut uses 5).
    max_fit : int
        Pixels drawn per phase for each fit (the fit's cost does not grow with the image).
    rng : numpy.random.Generator
        Draws the pixels and seeds scikit-learn's initialisation.
    """

    def __init__(self, components: int, max_fit: int, rng: np.random.Generator):
        self.components = components
        self.max_fit = max_fit
        self.rng = rng
        self.models: list[Any] = [None, None]

    def fit(self, X: np.ndarray, labels: np.ndarray) -> None:
        """Re-estimate the mixture of phase 0 and 1 from the pixels ``X[labels == k]``."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        for phase in (0, 1):
            idx = np.flatnonzero(labels == phase)
            if idx.size < 2 * self.components:
                raise ValueError(f"phase {phase} has {idx.size} pixels; too few to model.")
            if idx.size > self.max_fit:
                idx = self.rng.choice(idx, self.max_fit, replace=False)
            previous = self.models[phase]
            model = GaussianMixture(
                self.components, covariance_type="diag", reg_covar=1e-2, tol=1e-2,
                max_iter=10 if previous is None else 3,
                random_state=int(self.rng.integers(2**31 - 1)),
                init_params="k-means++",
                **({} if previous is None else {
                    "weights_init": previous.weights_, "means_init": previous.means_,
                    "precisions_init": previous.precisions_}),
            )
            with warnings.catch_warnings():
                # a few EM steps per round on purpose: the fit is warm-started and converges
                # over the rounds of the region competition, not within one call
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.models[phase] = model.fit(X[idx])

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        """``log p_1(x) - log p_0(x)`` per row of ``X`` (nats; > 0 favours phase 1)."""
        return self.models[1].score_samples(X) - self.models[0].score_samples(X)
