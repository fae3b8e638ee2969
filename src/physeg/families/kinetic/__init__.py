"""Kinetic consensus segmentation (seed 000): particle model, macroscopic model, CBO fitting.

Every pixel is a particle with a position ``x`` in Omega, the image's own rectangle (square
pixels, the long side spanning [-1, 1]: ``[-1, 1] x [-rows/cols, rows/cols]`` for a wide image,
[-1, 1]^2 for a square one), and a feature ``c`` in [0, 1]^d (grey d = 1, RGB d = 3).
Positions aggregate between pixels of similar feature (bounded confidence, threshold Delta)
with diffusion sigma; features are transported towards the local average over a ball of
radius r and binarised by a double-well potential with barrier cbar (or K wells for
``classes=K``). The final feature of each particle, written at its original pixel, is the
label. See :mod:`._dsmc` for the particle model and its DSMC solver, :mod:`._equilibrium` for
the Beta quasi-equilibrium, :mod:`._macro` for the macroscopic finite-volume model,
:mod:`._fit` for the CBO parameter identification and :mod:`._multiwell` for the potentials.

Usage::

    labels = physeg.segment(image, method="kinetic")                  # default parameters
    labels = physeg.segment(image, method="kinetic", classes=3)       # K = 3 wells
    model = physeg.fit("kinetic", images, masks)                      # CBO fit of theta
    model.save("kinetic.json"); physeg.load("kinetic.json").predict(image)

Defaults (chosen by measurement on the seed-000 synthetic shapes, see
``benchmarks/kinetic_paper.py``): Delta = 0.3, sigma = 0.1, r = 0.06, cbar = the midpoint of
the phases' local averages (K = 2; 0.5 on the posterior) or the multi-Otsu thresholds of the
features (K >= 3), eps = 0.05, dt = 0.1, T = 4, rates
lambda_x = 0.05 (slow aggregation), lambda_T = 20, lambda_B = 0.5.

References
----------
H. Tettamanti, G. Guicciardi, M. Zanella, "A Multiscale Kinetic Framework for Image
Segmentation: From Particle Systems to Continuum Models", :arXiv:`2605.28619` (2026).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..._foreground import apply_rules
from ..._validate import as_rng
from .._registry import Method, defaults_from, register
from ._model import FIT_PARAMS, SEGMENT_PARAMS, KineticModel

__all__ = ["segment_kinetic", "fit_kinetic", "KineticModel", "parse_barriers"]


def parse_barriers(value: Any, d: int, classes: int) -> np.ndarray | str | None:
    """Barriers from a parameter value: None, "otsu", a number, or a list / "a,b,..." string.

    Returns None (default rule), "otsu", or an array (d, classes - 1). A list of ``K - 1``
    values applies to every channel; ``d (K - 1)`` values are channel-major. Every barrier k
    must lie strictly inside its gap ``(t_{k-1}, t_k)`` of the equally spaced targets.
    """
    from . import _multiwell

    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().strip("[]()").strip()
        if text.lower() in ("", "none", "auto", "default"):
            return None
        if text.lower() == "otsu":
            return "otsu"
        try:
            vals = [float(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
        except ValueError:
            raise ValueError(
                f"barriers must be 'otsu', a number or comma-separated numbers such as "
                f"'0.3,0.7'; got {value!r}."
            ) from None
    else:
        vals = np.asarray(value, dtype=float).ravel().tolist()
    arr = np.asarray(vals, dtype=float)
    if arr.size == classes - 1:
        arr = np.tile(arr, (d, 1))
    elif arr.size == d * (classes - 1):
        arr = arr.reshape(d, classes - 1)
    elif arr.size == 1:
        arr = np.full((d, classes - 1), arr[0])
    else:
        raise ValueError(
            f"got {arr.size} barrier values; expected {classes - 1} (one per gap, K={classes}) "
            f"or {d * (classes - 1)} (per channel, channel-major)."
        )
    t = _multiwell.targets(classes)
    if np.any(arr <= t[:-1]) or np.any(arr >= t[1:]):
        raise ValueError(
            f"barrier values {arr.ravel().tolist()} must lie strictly inside their gaps "
            f"{[(round(a, 3), round(b, 3)) for a, b in zip(t[:-1], t[1:], strict=True)]} "
            f"(targets of K={classes})."
        )
    return arr


def _params(
    *, classes, delta, sigma, radius, barriers, eps, dt, t_final, space_rate, transport_rate,
    binarise_rate, feature_update, d,
):
    from ._dsmc import KineticParams

    b = parse_barriers(barriers, d, classes)
    if b is None:
        b = np.full((d, 1), 0.5) if classes == 2 else None
    elif isinstance(b, str):
        b = None  # "otsu": computed from the features
    return KineticParams(
        delta=delta, sigma=sigma, radius=radius, barriers=b, classes=classes, eps=eps, dt=dt,
        t_final=t_final, space_rate=space_rate, transport_rate=transport_rate,
        binarise_rate=binarise_rate, feature_update=feature_update,
    )


@defaults_from(SEGMENT_PARAMS)
def segment_kinetic(
    image: np.ndarray,
    *,
    classes: int,
    delta: float,
    sigma: float,
    radius: float,
    barriers: Any,
    eps: float,
    dt: float,
    t_final: float,
    space_rate: float,
    transport_rate: float,
    binarise_rate: float,
    feature_update: str,
    runs: int,
    readout: int,
    fidelity: str,
    foreground: str,
    objects: str,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: None | int | np.random.Generator = None,
) -> np.ndarray:
    """Segment a 2D grey or colour image with the kinetic particle model (DSMC).

    Parameters
    ----------
    image : ndarray (rows, cols) or (rows, cols, C)
        Any real or integer dtype; each channel is min-max normalised to [0, 1] (eq. 32).
    classes : int, default 2
        Number of labels K (2..8); K = 2 is the paper's double well, K >= 3 uses K wells at
        0, 1/(K-1), ..., 1.
    delta : float, default 0.3
        Confidence threshold Delta (0..1.8): pixels with |c_i - c_j| <= Delta aggregate in
        space. Larger = coarser spatial clusters.
    sigma : float, default 0.1
        Spatial diffusion (0..2); larger = positions spread more.
    radius : float, default 0.06
        Local-average radius r in Omega units (the image's longer side spans 2); larger =
        more denoising, rounder corners. 0.06 is 3.8 pixels at 128^2.
    barriers : None, "otsu", float or str, default None
        Barrier(s) cbar of the wells: None = for K = 2 the midpoint of the two phases' mean
        local averages (:func:`._dsmc.phase_midpoints`; about 0.5 on the seed's images,
        0.07-0.23 for dim nuclei beside a few saturated pixels) on the intensities and 0.5
        (equal odds) on the posterior, the multi-Otsu thresholds of each channel for
        K >= 3; a number (``0.5``: the seed's barrier), ``"a,b"`` (K - 1 values) or
        ``d (K - 1)`` values channel-major (RGB). Lower cbar = more pixels go to the upper
        well.
    eps : float, default 0.05
        Quasi-invariant interaction strength epsilon (0..1) of the spatial binary rule.
    dt, t_final : float, default 0.1, 4.0
        Time step (reduced automatically to the admissibility bounds) and final time T.
        0.1 replaced 0.05 (issue 15): on the development tuning images (seed 0) mean Dice
        0.9464 / 0.8145 / 0.8359 / 0.8486 vs 0.9464 / 0.8147 / 0.8361 / 0.8486 (WBC,
        horses, dsb2018, PH2) and 0.977 vs 0.980 on the 6 synthetic shapes (σ 0.3; the
        seed's grid: mean 0.9923 vs 0.9942), for 10-35 % less CPU time
        (``docs/methods/kinetic.md``); ``dt=0.05`` gives the former labels.
    space_rate, transport_rate, binarise_rate : float, default 0.05, 20, 0.5
        Rates lambda_x, lambda_T, lambda_B of aggregation, feature transport and binarisation.
        Raising ``space_rate`` lets positions cluster (fast rates degrade masks);
        raising ``transport_rate`` denoises more; raising ``binarise_rate`` thresholds sooner.
    feature_update : {"mean", "nanbu"}, default "mean"
        Mean-field (low-variance) or literal Nanbu feature updates.
    runs : int, default 1
        Independent DSMC runs whose final features are averaged before the read-out.
    readout : int, default 5
        Read-out window (odd, 1..15 pixels of the output): each pixel takes the majority
        label of the window around it (:func:`._multiwell.window_majority`), a
        lower-variance estimate of the particles' outcome than one particle per pixel; 1 =
        each particle's own well (the paper). Larger = fewer stray pixels, corners rounder
        by about a pixel, lines no wider than ``readout // 2`` pixels lost. 5 measured best on
        the tuning images (seed 0; ``docs/methods/kinetic.md``): synthetic σ 0.3 0.977 →
        0.990, horses +0.004, WBC +0.004, dsb2018 +0.001, PH2 +0.000.
    fidelity : {"auto", "means", "mixtures"}, default "auto"
        The particles' feature. ``"means"``: the image's intensities (the paper).
        ``"mixtures"`` (K = 2): the posterior of two phase Gaussian mixtures
        (:func:`object_posterior`; colour images with the border prior unless they are
        many objects (:func:`_colour_many_objects`) or still give several with it
        (:func:`_several_objects_despite_the_prior`: run again without), at a quarter of
        their pixels, 2 500 to 10 000 px (:func:`colour_pixels`); the particles of a grey
        image at up to 65 000 px; the labels interpolated back). With ``"means"`` a binary
        grey image of 131 072 px or more runs its particles at 65 536 px. ``"auto"``: mixtures
        for a binary colour image and for a grey image of 3 or more objects (nuclei), means
        otherwise.
    foreground : {"auto", "bright", "dark"}, default "auto"
        Which phase is label 1: ``"auto"`` = the one holding less of the image border (ties:
        the minority; fails for an object that fills the frame), ``"bright"`` / ``"dark"`` =
        the brighter / darker phase. For K > 2 it picks label 0 (the background).
    objects : {"all", "one"}, default "all"
        ``"one"``: keep the largest connected object and fill its holes (binary only).
    channel_axis, spacing
        Colour axis (moved last by ``physeg.segment``); spacing is ignored (pixels are square
        in the model's geometry).
    rng : None, int or numpy.random.Generator
        Seed of the pairings and noise: same seed, same labels.

    Returns
    -------
    labels : ndarray of uint8 (rows, cols)
        0..K-1 ordered by feature (0 = darkest class; for K = 2, 1 = bright foreground).

    Notes
    -----
    Binary rule in space (9), feature updates (10)::

        x_i' = x_i + eps 1{|c_i - c_j| <= Delta} (x_j - x_i) + sqrt(2 eps sigma^2) D(x_i) eta_i
        c_i' = c_i + lambda_T dt c_i (1 - c_i) (chat_i - c_i)
        c_i'' = c_i' - lambda_B dt K(cbar) c_i' (c_i' - cbar) (c_i' - 1)

    with chat_i the mean feature in the ball B_r(x_i), D(x) = diag(sqrt(a_k^2 - x_k^2)) on
    Omega = [-a_1, a_1] x [-a_2, a_2], a_1 = cols / max(rows, cols), a_2 = rows / max(rows,
    cols). The cost follows the pixel count whatever the aspect ratio.

    Examples
    --------
    >>> import numpy as np, physeg
    >>> img = np.zeros((32, 32)); img[8:24, 8:24] = 1.0
    >>> lab = physeg.segment(img, method="kinetic", rng=0)
    >>> int(lab[16, 16]), int(lab[0, 0])
    (1, 0)
    """
    from ..._regions import is_colour, to_working_resolution
    from ._dsmc import image_features, phase_midpoints, run_particle_model
    from ._multiwell import window_majority

    img = np.asarray(image)
    if img.ndim != (3 if channel_axis is not None else 2):
        raise ValueError(
            f"kinetic segments 2D images (rows, cols[, channels]); got shape {img.shape}."
        )
    gen = as_rng(rng)
    with_prior = None  # colour posterior: with the border prior (one object) or without
    probed = None  # the posterior's region features, computed once (grey: by the auto rule)
    if fidelity == "auto":
        fidelity, probed = _auto_fidelity(img, channel_axis, classes)
    if fidelity == "mixtures":
        if classes != 2:
            raise ValueError(f"fidelity='mixtures' gives two phases (got classes={classes}); "
                             "use fidelity='means' for K > 2.")
        # colour: the posterior, and so the particles, at colour_pixels; grey: the posterior at
        # full resolution (small nuclei), the particles at up to _GREY_PARTICLE_PIXELS
        if probed is None:
            probed = posterior_features(img, channel_axis)
        if is_colour(img, channel_axis):
            with_prior = not _colour_many_objects(probed)
        feats = object_posterior(img, channel_axis, gen, features=probed,
                                 border_prior=with_prior)[..., None]
    else:  # binary grey: the particles at up to _GREY_MEANS_PIXELS
        feats = image_features(img, channel_axis)

    def particles(features):
        features = to_working_resolution(features, -1,
                                         particle_pixels(img, channel_axis, fidelity, classes))
        d = features.shape[-1]
        bars = barriers
        if fidelity == "means" and classes == 2 and parse_barriers(barriers, d, 2) is None:
            # the posterior keeps 0.5 (equal odds); the intensities' barrier is data-driven
            bars = phase_midpoints(features, radius)
        params = _params(
            classes=classes, delta=delta, sigma=sigma, radius=radius, barriers=bars, eps=eps,
            dt=dt, t_final=t_final, space_rate=space_rate, transport_rate=transport_rate,
            binarise_rate=binarise_rate, feature_update=feature_update, d=d,
        )
        return run_particle_model(features, params, gen, runs=runs)[0]

    labels = particles(feats)
    if with_prior and _several_objects_despite_the_prior(img, channel_axis, labels, probed):
        posterior = object_posterior(img, channel_axis, gen, features=probed, border_prior=False)
        labels = particles(posterior[..., None])
    full_shape = img.shape[:2]
    if labels.shape != full_shape:  # the particles ran at a reduced resolution
        from ..._regions import to_full_resolution

        labels = (to_full_resolution(labels.astype(np.float32), full_shape) > 0.5).astype(
            labels.dtype)
    labels = window_majority(labels, classes, readout)
    # the wells order the labels by feature, so the phases' brightness is their label
    # (mixtures: label 1 = the object side of the posterior, "brighter" by construction)
    return apply_rules(labels, np.arange(classes), foreground, objects)


#: grey posteriors of at least twice this many pixels are resampled to it for the particles:
#: on the 28 grey dsb2018 tuning images (every third development image from the second on,
#: seed 0) Dice 0.842 vs 0.844 at full resolution, 1.5 vs 3.8 CPU s (40 000: 0.839, 1.1 s;
#: 20 000: 0.833, 0.6 s); 256² to 360² images keep their resolution
_GREY_PARTICLE_PIXELS = 65_000
#: binary grey images of the intensities (fidelity "means") of at least twice this many pixels
#: run their particles at it; 32 768 until the read-out window took over the noise averaging
#: the resampling did (synthetic shapes at 256², sigma 0.3: 0.9919 at full resolution vs
#: 0.9901, 0.24 vs 0.13 CPU s; docs/methods/kinetic.md)
_GREY_MEANS_PIXELS = 65_536
#: colour images: the posterior and the particles at a quarter of the pixels (half per axis),
#: at most :data:`physeg._regions.WORK_PIXELS` (10 000), at least 2 500 px (see
#: :func:`colour_pixels`)
_COLOUR_MIN = 2_500


def colour_pixels(n: int) -> int:
    """Pixel budget of a colour image of ``n`` pixels for the posterior and the particles:
    ``min(WORK_PIXELS, max(n // 4, 2 500))``, used from twice the budget on
    (:func:`physeg._regions.to_working_resolution`), so images under 5 000 px keep theirs.

    Images of 40 000 px or more keep the working resolution as before; a small one (wbc,
    120 x 120) runs at 3 600 px instead of all 14 400: on 20 wbc tuning images (seed 0) Dice
    0.948 vs 0.946 at 0.042 vs 0.091 CPU s (GrabCut 0.036 s); 20 horse tuning images 0.830 vs
    0.832 (the 5 of 31 000-39 000 px run at 7 900-9 700 px).
    """
    from ..._regions import WORK_PIXELS

    return min(WORK_PIXELS, max(int(n) // 4, _COLOUR_MIN))


def particle_pixels(img: np.ndarray, channel_axis: int | None, fidelity: str,
                    classes: int = 2) -> int:
    """The pixel budget of the particles' grid; :func:`segment_kinetic` resamples the feature
    image to it when it has at least twice as many pixels (and interpolates the labels back,
    so only binary labels are resampled)."""
    from ..._regions import is_colour

    n = img.shape[0] * img.shape[1]
    if classes != 2:
        return n
    if is_colour(img, channel_axis):
        return colour_pixels(n) if fidelity == "mixtures" else n
    return _GREY_PARTICLE_PIXELS if fidelity == "mixtures" else _GREY_MEANS_PIXELS


def _auto_fidelity(img: np.ndarray, channel_axis: int | None,
                   classes: int) -> tuple[str, np.ndarray | None]:
    """``fidelity="auto"``: the mixtures' posterior for a binary colour image and for a grey
    image of many objects (where the intensities collapse, below), the intensities otherwise.
    Returns the fidelity and, for a binary grey image, the region features it probed (the
    posterior reuses them).

    Measured on tuning images of the development sets (``docs/methods/heat.md``): on grey
    nuclei (dsb2018) the consensus of the raw intensities merges the small bright objects
    into the dark majority (Dice 0.13 on 8 images; the interaction radius is wider than a
    nucleus) while the posterior, already near 0 or 1, is binarised as it is (0.81). "Many"
    is 3 or more objects here (:func:`physeg._regions.many_objects` with ``count=3``); the
    synthetic shapes of the seed's experiments (one object) keep the intensities, on which
    the posterior, without a spatial term, scores lower under Gaussian and Poisson noise
    (0.96-0.99 vs 0.99-1.0 on 3 shapes at level 2; speckle: 0.998-0.999 vs 0.989-0.995).
    """
    from ..._regions import is_colour, many_objects, region_features

    if classes != 2:
        return "means", None
    if is_colour(img, channel_axis):
        return "mixtures", None
    feats = region_features(img, channel_axis)
    # the count on the intensity smoothed by sigma = 1 px: on the raw pixels of a noisy frame
    # with a few objects Otsu's threshold cuts the background's noise into "many objects"
    # (two discs at noise 0.03-0.1: posterior Dice 0.00-0.02, the intensities 0.81-0.99;
    # docs/methods/kinetic.md). Three objects suffice: on the 50 grey tuning images the
    # posterior beat the intensities on 5 of the 6 with fewer than 8 objects (0.71 vs 0.24)
    objects = _smoothed_objects(feats)
    return ("mixtures" if many_objects(objects, count=3, largest=0.5) else "means"), feats


def _smoothed_objects(features: np.ndarray) -> np.ndarray:
    """The objects (uint8 mask) of Otsu's partition of the first feature (the lightness)
    smoothed by a Gaussian of 1 px: the phase holding less of the border
    (:func:`physeg._foreground.foreground_order`). The probe that the many-objects rules
    count."""
    from scipy import ndimage as ndi

    from ..._foreground import foreground_order
    from ..._regions import otsu_partition

    smooth = ndi.gaussian_filter(features[..., :1], (1.0,) * (features.ndim - 1) + (0.0,))
    phase = otsu_partition(smooth).astype(np.uint8)
    order = foreground_order(phase, np.array([0.0, 1.0]), "auto")
    return (phase == order[1]).astype(np.uint8)


def posterior_features(image: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """:func:`physeg._regions.region_features` at the posterior's resolution: colour images
    at :func:`colour_pixels`, grey ones at full resolution (no spatial term to make
    resolution-independent, and the small objects it is for blur at the working resolution:
    8 nuclei tuning images 0.81 vs 0.77)."""
    from ..._regions import is_colour, region_features, to_working_resolution

    arr = np.asarray(image)
    if is_colour(arr, channel_axis):
        n = arr.shape[0] * arr.shape[1]
        arr = to_working_resolution(arr, channel_axis, colour_pixels(n))
    return region_features(arr, channel_axis)


def object_posterior(image: np.ndarray, channel_axis: int | None,
                     rng: np.random.Generator, *, rounds: int = 4,
                     features: np.ndarray | None = None,
                     border_prior: bool | None = None) -> np.ndarray:
    r"""The particles' feature for ``fidelity="mixtures"``: p(phase 1 | colour or intensity).

    Region competition without the spatial term (:mod:`physeg._regions`): ``rounds`` times
    the two phase mixtures are re-fitted and every pixel takes the phase of its larger
    posterior. Colour images run at :func:`colour_pixels` (a quarter of the pixels, at most
    the working resolution), start from the image minus a 5 %
    border strip and add the border prior :math:`w(D - 1/2)` (phase 1 = the object side),
    unless they are many objects (:func:`_colour_many_objects`: stained nuclei).
    Those, and grey images (at full resolution), start from Otsu's threshold and have no
    prior (phase 1 = the brighter side; the ``foreground`` rule then picks the object): an
    image of many objects has no single enclosed object for the prior to find. Their
    read-out adds the class prior :math:`\log(n_1/n_0)`, the phases' pixel counts in the
    converged partition (Bayes' rule; without it a rare phase of small objects is dilated
    into its blurred rim: on the 109 dsb2018 tuning images Dice 0.836 → 0.845, sparse
    nuclei up to +0.10, dense ones down to −0.07; the benchmark rows 0.786 → 0.800). The
    log-odds :math:`\log p_1 - \log p_0 (+ \text{prior})` are returned as the posterior
    :math:`\sigma(\cdot)` in [0, 1], which the consensus dynamics aggregate and binarise (the
    seed's "couple with learning" direction), at the resolution they were computed at: the
    particles of a colour image run at that resolution too and their labels are
    interpolated back (bilinear, threshold 1/2). The interaction radius and noise are
    fractions of the image, so this changes the discretisation, not the model: on the tuning
    images (every third development image from the second on, seed 0) horses 0.807 vs 0.811
    at 0.30 vs 1.19 CPU s, PH2 (6) 0.806 vs 0.806 at 0.78 vs 9.9 s.
    ``features``: :func:`posterior_features` of the image when the caller has them already
    (the ``auto`` rule's grey probe, the colour many-objects tests), so they are not
    computed twice.
    ``border_prior``: for a colour image, True / False forces the start and prior of one
    object / many objects; None (default) lets :func:`_colour_many_objects` decide.
    """
    from ..._regions import (
        BORDER_PRIOR,
        COMPONENTS,
        MAX_FIT,
        PhaseMixtures,
        initial_partition,
        is_colour,
        object_prior,
        otsu_partition,
    )

    arr = np.asarray(image)
    colour = is_colour(arr, channel_axis)
    feats = posterior_features(arr, channel_axis) if features is None else features
    # a colour image of many objects (stained nuclei) has no single enclosed object for the
    # border prior: it starts from Otsu's threshold without the prior, as a grey one does
    many = colour and (not border_prior if border_prior is not None
                       else _colour_many_objects(feats))
    X = feats.reshape(-1, feats.shape[-1])
    if colour and not many:
        u = initial_partition(feats).reshape(-1)
        prior = object_prior(feats, BORDER_PRIOR).reshape(-1)
    else:
        u = otsu_partition(feats).reshape(-1)
        prior = np.zeros(u.shape, np.float32)
    mixtures = PhaseMixtures(COMPONENTS, MAX_FIT, rng)
    for _ in range(rounds):
        mixtures.fit(X, u)
        odds = mixtures.log_odds(X) + prior
        new = odds > 0
        if np.array_equal(new, u) or not new.any() or new.all():
            break
        u = new
    if not (colour and not many):
        # Bayes' rule with the phases' shares of the converged partition as the prior; only
        # at the read-out (re-fitting with it drifts towards the majority: tuning nuclei
        # 0.833 vs 0.845 here, 0.836 without it)
        n1 = float(min(max(np.count_nonzero(u), 1), u.size - 1))
        odds = odds + np.float32(np.log(n1 / (u.size - n1)))
    odds = odds.reshape(feats.shape[:-1])
    posterior = 0.5 * (1.0 + np.tanh(0.5 * np.clip(odds, -60, 60)))
    return posterior.astype(np.float64)


def _colour_many_objects(features: np.ndarray) -> bool:
    """True when the Otsu partition of the (σ = 1 px smoothed) lightness, the phase holding
    less of the border as the objects, is many objects: >= 8 objects of >= 0.1 % of the
    image (:func:`physeg._regions.many_objects`) with the largest under 35 % of them, or
    under 80 % when the two phases are flat (their means explain at least
    :data:`physeg._regions.FLAT_PHASES` of the CIELAB variance: stained nuclei on a flat
    background, where a clump holds much of the foreground; heat's third rule, with the
    bound of its second).

    On the colour tuning images (every third development image from the second and third
    on, at the posterior's resolution) the first test held for 14 of the 17 stained-nuclei
    images and for none of the 54 horses, 33 PH2 lesions and 50 WBC images; kinetic's Dice
    on the 17 nuclei images went from 0.607 (border prior) to 0.827 (seed 0; at full
    resolution 0.811). The flat-phases test adds the other 3 (explained variance 0.82-0.83,
    10-11 objects): Dice on the 17 images 0.828 -> 0.869 (those 3: 0.60-0.67 -> 0.84-0.90).
    The horse, PH2 and WBC tuning images that reach 0.72 have 1-5 objects; the one horse
    with 8 or more (18) explains 0.70. Without the 80 % bound the rule also held for a
    benchmark horse (horse233: 13 objects, the largest 86 % of them, 0.83 explained; Dice
    0.79 -> 0.05); the bound was added after that run (the 3 nuclei images hold 35-59 %).
    """
    from ..._regions import FLAT_PHASES, explained_variance, many_objects

    objects = _smoothed_objects(features)
    if many_objects(objects, largest=0.35):
        return True
    return (many_objects(objects, largest=0.8)
            and explained_variance(features[..., :3], objects) >= FLAT_PHASES)


def _several_objects_despite_the_prior(image: np.ndarray, channel_axis: int | None,
                                       labels: np.ndarray,
                                       features: np.ndarray | None = None) -> bool:
    """True when a colour image segmented with the border prior (one object) still gives
    several objects and the smoothed-Otsu probe agrees: label 1 of ``labels`` (at the
    particles' resolution) is 4 or more objects of >= 0.1 % of the image, the largest under
    80 % of them, and :func:`_smoothed_objects` at the posterior's resolution has 4 or more,
    the largest under 50 %. :func:`segment_kinetic` then runs the posterior again without
    the prior (a few stained nuclei, too few for :func:`_colour_many_objects`; it asks only
    when the prior was used). ``features``: :func:`posterior_features`, when known.

    Heat's second many-objects rule (``segment_colour_auto`` in heat's ``_mixtures``,
    measured there on the tuning images), with kinetic's own probe. On the tuning images
    (every third development image from the second and third on, seed 0) it holds for none
    of the 54 horses, 33 PH2 lesions and 50 WBC images (one half alone holds for 9, 11 and
    0 of them, where dropping the prior costs 0.2-0.8 Dice). All 17 colour dsb2018 tuning
    images are many objects already, so its gain was measured on the benchmark rows
    (``rows[0::3]``): it holds for 2 of the 10 colour images, Dice 0.460 -> 0.746 and
    0.729 -> 0.911.
    """
    from ..._regions import is_colour, many_objects

    if not is_colour(image, channel_axis) or not many_objects(labels == 1, count=4,
                                                               largest=0.8):
        return False
    if features is None:
        features = posterior_features(image, channel_axis)
    return many_objects(_smoothed_objects(features), count=4, largest=0.5)


def _load_model(data: dict[str, Any], path: Any) -> KineticModel:
    # files written before the read-out window existed read out each particle's own well
    data = {**data, "params": {"readout": 1, **data.get("params", {})}}
    if isinstance(data.get("state"), dict) and "learned" in data["state"]:
        from ._learned import learned_from_dict

        return learned_from_dict(data)
    return KineticModel(data["params"], data.get("info", {}))


def fit_kinetic(images: list, masks: list | None, *, progress: Any = None,
                **kwargs: Any) -> KineticModel:
    """Fit theta by CBO (see :func:`physeg.families.kinetic._fit.fit`); called by ``physeg.fit``.

    ``likelihood="learned"`` learns the particles' feature instead (:mod:`._learned`: a random
    forest's posterior, theta kept). ``progress(done, total, message)`` is called after every
    CBO iteration (learned: per training image and for the forest).
    """
    from ._model import FIT_PARAMS, LEARNED_ONLY

    if kwargs.get("likelihood", "none") == "learned":
        from ._learned import fit_learned

        if masks is None:
            raise ValueError("kinetic fitting needs one mask per training image (masks=None "
                             "given).")
        defaults = {p.name: p.default for p in FIT_PARAMS}
        learn = {k: kwargs.pop(k, defaults[k]) for k in LEARNED_ONLY}
        learn.pop("likelihood")
        cbo_only = sorted(set(kwargs) & {"loss", "n_agents", "max_iter", "fit_size", "n_bins"})
        if cbo_only:
            raise ValueError(f"{cbo_only} are CBO settings; likelihood='learned' trains a "
                             "forest instead (drop them or use likelihood='none').")
        return fit_learned(images, masks, rng=kwargs.pop("rng", None), progress=progress,
                           **learn, **kwargs)
    from ._fit import fit

    learned = sorted(k for k in set(kwargs) & set(LEARNED_ONLY) if k != "likelihood")
    if learned:
        raise ValueError(f"{learned} are settings of likelihood='learned'; pass "
                         "likelihood='learned' or drop them.")
    kwargs.pop("likelihood", None)
    # physeg.fit validated kwargs
    return fit.unchecked(images, masks, progress=progress, **kwargs)


register(
    Method(
        name="kinetic",
        func=segment_kinetic,
        params=SEGMENT_PARAMS,
        summary="particles that move and agree with their neighbours until every pixel "
        "settles into a class (kinetic consensus model); no labels needed, or fitted to one",
        fit_func=fit_kinetic,
        load_func=_load_model,
        supports_3d=False,
        supports_multichannel=True,
        requires=(),
        fit_params=FIT_PARAMS,
    )
)
