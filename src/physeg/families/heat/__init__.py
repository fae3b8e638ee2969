r"""Heat-semigroup segmentation: threshold dynamics for the piecewise-constant Mumford–Shah model.

Registered as ``heat`` (``physeg.segment(image, method="heat")``, ``physeg segment --method
heat``). The idea of heatdiff (seed 002: alternate a heat-semigroup step, which shortens the
boundary, with a step that pulls the mask towards the data) made sound, general and fast.

Model
-----
For an image :math:`f:\Omega\to\mathbb R^d` and a partition :math:`u=(u_1..u_K)`,
:math:`u_k\in\{0,1\}`, :math:`\sum_k u_k=1`, minimise

.. math::

    E_\tau(u,c) = \sum_k \int u_k |f-c_k|^2\,dx
                  + \frac{\lambda}{\sqrt\tau}\sum_k \int u_k\,(G_\tau * (1-u_k))\,dx ,

with :math:`G_\tau * g = e^{\tau\Delta} g` the heat semigroup (reflecting boundaries). The second
term Γ-converges to :math:`(2\lambda/\sqrt\pi)\cdot` (total interface length/area) as
:math:`\tau\to 0` (each interface is counted by the two phases it separates). Each iteration
(Esedoglu–Tsai 2006; Esedoglu–Otto 2015):

1. means :math:`c_k = \int u_k f / \int u_k` (an empty phase keeps its previous mean);
2. diffusion :math:`\psi_k = G_\tau * u_k`;
3. thresholding :math:`u_k \leftarrow 1` where
   :math:`k = \arg\min_j\, |f-c_j|^2 - (2\lambda/\sqrt\tau)\,\psi_j` (ties: lowest :math:`j`).

Step 3 minimises the linearisation of the concave perimeter term, so for a positive-definite
kernel :math:`E_\tau(u^{n+1},c^{n+1}) \le E_\tau(u^n,c^n)`: the energy never increases (up to
float32 rounding of :math:`\psi`). The iteration stops when no pixel changes.

Choices (the measurements behind them: ``docs/methods/heat.md``)
---------------------------------------------------------------
- **Normalisation**: centre per channel, divide by the root of the *total* variance (one
  factor for all channels, so colour balance is kept); ``lam`` is then relative to the image
  variance and any positive affine rescaling of the image gives the same labels.
- **λ is a length** (pixels or ``spacing`` units): a blob of radius R and normalised contrast²
  Δ² survives roughly when :math:`R > 4\lambda/(\sqrt\pi\,\Delta^2)`.
- **Heat step**: the exact Neumann semigroup in the DCT-II basis (:mod:`._mbo`), cached per
  (shape, τ, spacing); no truncation, any shape, 2D and 3D. K = 2 needs one diffusion per
  iteration (:math:`\psi_0 = 1-\psi_1`).
- **Defaults** ``tau=1`` px², ``lam=8``: best measured on the synthetic grid and on noisy 3D
  ellipsoids (a narrow kernel keeps boundaries where the data put them).
- **Initialisation** ``init="auto"``: Otsu / multi-Otsu of the heat-smoothed image for grey
  K ≤ 4, deterministic k-means otherwise; a *local* minimiser, so the start matters.
- **Which phase is the object** (``foreground``, :mod:`physeg._foreground`): by default the
  phase that holds less of the image border is label 1 (K > 2: the border phase is label 0, the
  others follow by brightness); ``"bright"`` / ``"dark"`` order by brightness instead.
- **Region model** (``fidelity``): ``"means"`` is the model above; ``"mixtures"``
  (:mod:`._mixtures`) replaces :math:`|f-c_k|^2` by :math:`-\log p_k(f)` under a colour/texture
  mixture per phase plus a border-distance prior; ``"auto"`` takes the mixtures for binary
  colour images of one object, where they measured best, and the means otherwise (grey
  images, K > 2, and colour images of many separate objects: the region means find 8 or more,
  or both models find 4 or more; :func:`._mixtures.segment_colour_auto`).
- **Reaction** ``r > 0``: heatdiff's relaxed update :math:`v_k=(1-r)\psi_k + r\,t_k`, so a seed
  mask (``init="mask"``) grows into the data-compatible region; energy decrease is only
  guaranteed for ``r = 0``.
- **Blockwise**: one iteration looks about :math:`6\sqrt\tau` pixels away; see
  :mod:`.blockwise` for the halo and the global means.

References
----------
.. [1] B. Merriman, J. Bence, S. Osher, "Diffusion generated motion by mean curvature", 1992.
.. [2] S. Esedoglu, Y.-H. R. Tsai, "Threshold dynamics for the piecewise constant
   Mumford–Shah functional", J. Comput. Phys. 211 (2006) 367–384,
   :DOI:`10.1016/j.jcp.2005.05.027`.
.. [3] S. Esedoglu, F. Otto, "Threshold dynamics for networks with arbitrary surface tensions",
   Comm. Pure Appl. Math. 68 (2015) 808–864, :DOI:`10.1002/cpa.21527`.
.. [4] D. Wang, H. Li, X. Wei, X.-P. Wang, "An efficient iterative thresholding method for image
   segmentation", J. Comput. Phys. 350 (2017) 657–667, :DOI:`10.1016/j.jcp.2017.08.020`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..._foreground import FOREGROUND_RULES, OBJECT_RULES, foreground_order, keep_one_object
from ..._regions import BORDER_PRIOR, COMPONENTS, TEXTURE
from ..._validate import as_rng, channel_axis_from_mask, check_image, check_labels_like
from .._registry import Method, Param, defaults_from, register
from ._learned import LEARNED_FIT_PARAMS
from ._mbo import (
    heat_multiplier,
    heat_smoother,
    heat_step,
    kmeans_labels,
    otsu_labels,
    run_binary,
    run_multi,
)

__all__ = ["segment_heat", "fit_heat", "HEAT_PARAMS"]

_INITS = ("auto", "kmeans", "otsu", "mask")
_FIDELITIES = ("auto", "means", "mixtures")
_INIT_TAU_FACTOR = 4.0  # the automatic initialisations cluster G_{4 tau} * f
#: the many-objects probe of fidelity="auto" resamples images of 100 000 px or more to this
#: size: stained-nuclei images (256 x 320) are probed at full resolution, where clumped nuclei
#: stay apart (15 of 17 tuning images called "many", 12 at 40 000 px; Dice on the 109 dsb2018
#: tuning images 0.861 vs 0.855; none of the 82 development horses is "many" either way)
_PROBE_PIXELS = 50_000

HEAT_PARAMS: tuple[Param, ...] = (
    Param("classes", "int", 2, "number of phases K; labels 0..K-1 ordered by brightness",
          low=2, high=64),
    Param("tau", "float", 1.0, "diffusion time in pixel^2 (kernel std sqrt(2 tau)); higher = "
          "smoother, coarser boundaries", low=1e-3, high=1e4),
    Param("lam", "float", 8.0, "boundary-length weight relative to the image variance (a "
          "length, pixels); higher = fewer, rounder regions", low=0.0, high=1e4),
    Param("init", "str", "auto", "initial partition: otsu / kmeans on intensities (auto picks); "
          "'mask' needs init_labels (Python API)", choices=_INITS),
    Param("reaction", "float", 0.0, "0 = threshold dynamics; r in (0, 1] = heatdiff-style "
          "relaxed reaction (a seed mask grows by about a kernel width per iteration)",
          low=0.0, high=1.0),
    Param("max_iter", "int", 300, "iteration cap (it stops earlier when no pixel changes)",
          low=1, high=100000),
    Param("tol", "float", 0.0, "also stop when the relative energy decrease is below tol "
          "(0 = only when no pixel changes)", low=0.0, high=1.0),
    Param("fidelity", "str", "auto", "region model: means (piecewise-constant Mumford-Shah), "
          "mixtures (colour Gaussian mixtures per phase + border prior; K = 2) or auto "
          "(mixtures for a binary colour image of one object, means otherwise: grey images, "
          "and colour images whose means find many objects such as nuclei)",
          choices=_FIDELITIES),
    Param("foreground", "str", "auto", "which phase is label 1: auto (the one holding less "
          "of the image border), bright or dark; K > 2: label 0 = background",
          choices=FOREGROUND_RULES),
    Param("objects", "str", "all", "all objects, or one: the largest connected object with "
          "its holes filled (binary)", choices=OBJECT_RULES),
    Param("components", "int", COMPONENTS, "mixtures: Gaussians per phase", low=1, high=20),
    Param("border_prior", "float", BORDER_PRIOR, "mixtures: weight (nats) of the border-distance "
          "object prior; 0 = colours and texture alone", low=0.0, high=1000.0),
    Param("texture", "float", TEXTURE, "mixtures: scale (pixels) of the local-contrast texture "
          "feature; 0 = colour only", low=0.0, high=50.0),
)

_DEFAULTS = {p.name: p.default for p in HEAT_PARAMS}


def _normalise(arr: np.ndarray, has_channels: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre per channel, divide by sqrt(total variance); float32 (..., C). Never in place."""
    feats = arr if has_channels else arr[..., None]
    mean = feats.reshape(-1, feats.shape[-1]).mean(axis=0, dtype=np.float64)
    f64 = feats.astype(np.float64) - mean
    total_var = float(np.mean(np.einsum("...c,...c->...", f64, f64)))
    if not total_var > 0.0:
        raise ValueError(
            "the image is constant (zero variance over all pixels and channels); there is no "
            "boundary to find. Check that the right image or channel_axis was passed."
        )
    scale = math.sqrt(total_var)
    f = (f64 / scale).astype(np.float32)
    return f, mean, scale


@defaults_from(HEAT_PARAMS)
def segment_heat(
    image: Any,
    *,
    classes: int,
    tau: float,
    lam: float,
    init: str,
    init_labels: Any = None,
    reaction: float,
    max_iter: int,
    tol: float,
    fidelity: str,
    foreground: str,
    objects: str,
    components: int,
    border_prior: float,
    texture: float,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: Any = None,
    workers: int | None = None,
    return_energy: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    r"""Segment an image into K phases by heat-semigroup threshold dynamics.

    Minimises :math:`E_\tau(u,c)=\sum_k\int u_k|f-c_k|^2 + (\lambda/\sqrt\tau)\sum_k\int
    u_k\,G_\tau*(1-u_k)` (piecewise-constant Mumford–Shah / Chan–Vese with the heat-kernel
    perimeter) by alternating region means, one exact Neumann heat step per phase (DCT-II) and
    thresholding; see the module docstring for the equations and the choices.

    Parameters
    ----------
    image : array_like
        2D (rows, cols) or 3D (planes, rows, cols) image, grey or with channels on
        ``channel_axis`` (RGB or any number of channels: vector-valued fidelity). Any integer
        or float dtype; it is never modified. Only relative intensities matter (the image is
        normalised to zero mean and unit total variance), so uint8 and float versions of the
        same image give the same labels.
    classes : int, default 2
        Number of phases K (2..64). Label 1 (K = 2) or label 0 (K > 2) follows
        ``foreground``; the other phases are ordered by brightness.
    tau : float, default 1.0
        Diffusion time τ in pixel² (or ``spacing``²), 1e-3..1e4; the kernel is a Gaussian of
        std ``sqrt(2 τ)``. It does not depend on the image size. Larger τ: smoother, coarser
        boundaries and faster fronts; below about 0.5 px² the interface gets pinned by the grid.
    lam : float, default 8.0
        Boundary weight λ ≥ 0 relative to the image variance, a length in pixels (or
        ``spacing`` units). 0 = pure nearest-mean clustering; larger values remove noise
        speckles and small or thin regions and round corners (a blob of radius R and normalised
        contrast² Δ² survives roughly when R > 4λ/(√π Δ²)).
    init : {"auto", "kmeans", "otsu", "mask"}, default "auto"
        Initial partition.

        ``"otsu"``
            (multi-)Otsu thresholds of the intensity (first principal component for colour).
        ``"kmeans"``
            k-means on the (normalised) channel vectors.
        ``"mask"``
            ``init_labels``.
        ``"auto"``
            ``"mask"`` when ``init_labels`` is given, else ``"otsu"`` for grey images with
            K ≤ 4 and ``"kmeans"`` otherwise.
    init_labels : array_like of int, optional
        Initial mask (binary: nonzero = phase 1) or label image with values 0..K-1, of the
        image's spatial shape. Every phase must have at least one pixel.
    reaction : float, default 0.0
        0 = threshold dynamics (energy never increases). r in (0, 1]: heatdiff-style relaxed
        reaction :math:`u=\arg\max_k[(1-r)\psi_k + r\,t_k]` with :math:`t` the fidelity minimiser;
        a seed mask then grows by a fraction of the kernel width per iteration (small r: slow,
        smooth growth; r ≥ 1/2: the data decide alone). ``lam`` is unused in this mode.
    max_iter : int, default 300
        Iteration cap (1..100000); it normally stops earlier, when no pixel changes.
    tol : float, default 0.0
        Also stop when the relative energy decrease of one iteration is ≤ ``tol`` (0..1).
    fidelity : {"auto", "means", "mixtures"}, default "auto"
        Region model. ``"means"``: piecewise-constant (the energy above). ``"mixtures"``
        (K = 2, ``init="auto"`` only): a Gaussian mixture per phase on CIELAB (+ texture),
        re-estimated between descents, started from the image minus a 5 % border strip, with
        the border prior (:mod:`._mixtures`); it runs at a working resolution of about
        10 000 pixels (τ and λ in those pixels) and interpolates the result back.
        ``"auto"``: mixtures for a binary colour image (not a grey image stored as RGB) unless
        its region means already find many separate objects (8 or more, none holding 35 %
        of the foreground; 12 or more compact ones: nuclei, cells; or 8 or more in two flat
        colour phases, which explain ≥ 72 % of the colour variance: a stained slide), or both
        models do (the mixtures' own answer 4 or more objects, the means' too;
        :func:`._mixtures.segment_colour_auto`), means otherwise. Fails for: a colour image
        of 2-3 objects (the prior favours one), fewer than 8 large nuclei clumped together,
        a photograph of many round things (fruit, coins) or a flat-coloured drawing of one
        object in 8 or more pieces ("many objects"), and grey photographs of one object
        (means).
    foreground : {"auto", "bright", "dark"}, default "auto"
        Which phase is label 1: ``"auto"`` = the one holding less of the image border (ties:
        the minority; fails for an object that fills the frame), ``"bright"`` / ``"dark"`` =
        the brighter / darker phase. For K > 2 it picks label 0 (the background).
    objects : {"all", "one"}, default "all"
        ``"one"``: keep the largest connected object (face connectivity) and fill its holes
        (binary only).
    components : int, default 5
        Mixtures: Gaussians per phase (1..20). More: finer colour models, slower.
    border_prior : float, default 8.0
        Mixtures: weight in nats of the border-distance prior (0..1000); 0 = colours and
        texture alone. Higher: stronger preference for regions enclosed by contrast.
    texture : float, default 0.0
        Mixtures: scale in pixels of the local-contrast texture feature (0..50; 0 = none, the
        default: on the tuning images it lowered Dice; use it when the phases differ by
        texture alone).
    channel_axis : int or None, default None
        Axis of the channels; ``None`` means grey (a 3D array is then a volume).
    spacing : sequence of float, optional
        Pixel size per spatial axis (anisotropic volumes); τ and λ are then in these units.
    rng : None, int or numpy.random.Generator
        Draws the pixels each mixture is fitted on and seeds its initialisation
        (``fidelity="mixtures"``, so colour images by default: pass a seed for reproducible
        labels; ``None`` draws fresh entropy), and the subsample of ``init="kmeans"`` on images
        larger than 2**18 pixels. Same seed, same labels.
    workers : int, optional
        Threads for ``scipy.fft`` (default one; ``-1`` all cores). Python API only.
    return_energy : bool, default False
        Also return an ``info`` dict.

    Returns
    -------
    labels : numpy.ndarray of uint8 (int32 for K > 255)
        Spatial shape of the input; 1 = the object by ``foreground`` (binary), or 0 = the
        background by ``foreground`` and the others by brightness (K > 2).
    info : dict, only with ``return_energy=True``
        ``energy`` (list of float: :math:`E_\tau` of the partition at the start of every
        iteration and of the final one, normalised units × voxel volume), ``means`` (K, C) array
        of phase means in the input's intensity units (ordered like the labels; C = 1 for grey),
        ``counts`` (pixels per phase), ``iterations`` (threshold steps done), ``stop``
        (``"converged"``: no pixel changed; ``"tol"``; ``"max_iter"``), ``changed`` (pixels
        changed per iteration), ``init`` (the initialisation used).

    Raises
    ------
    ValueError
        Constant image; bad parameter ranges; ``init_labels`` of the wrong shape, with labels
        ≥ K or with an empty phase; ``init="mask"`` without ``init_labels``.

    Examples
    --------
    >>> import numpy as np
    >>> from physeg.families.heat import segment_heat
    >>> yy, xx = np.mgrid[:64, :64]
    >>> disc = ((yy - 32) ** 2 + (xx - 30) ** 2 < 15 ** 2).astype(float)
    >>> noisy = 0.25 + 0.5 * disc + np.random.default_rng(0).normal(0, 0.2, disc.shape)
    >>> labels, info = segment_heat(noisy, return_energy=True)
    >>> float((labels == disc).mean()) > 0.99, info["stop"]
    (True, 'converged')

    The heatdiff article's usage (a hand-placed seed that grows; here a small square inside the
    object, the article uses a centred square of side ``rows // 3``):

    >>> seed = np.zeros(disc.shape, np.uint8); seed[28:36, 26:34] = 1
    >>> grown, info = segment_heat(noisy, init="mask", init_labels=seed, reaction=0.3, tau=4.0,
    ...                            return_energy=True)
    >>> float((grown == disc).mean()) > 0.99, info["iterations"] > 10
    (True, True)
    """
    arr = check_image(image, channel_axis=channel_axis, allow_3d=True, allow_channels=True)
    gen = as_rng(rng)  # checked whatever the init, as every method does (refuses -1, "abc")
    has_channels = channel_axis is not None
    spatial = arr.shape[:-1] if has_channels else arr.shape
    ndim = len(spatial)
    if spacing is not None:
        spacing = tuple(float(s) for s in np.atleast_1d(spacing))
        if len(spacing) != ndim or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise ValueError(
                f"spacing must give one positive size per spatial axis ({ndim} for shape "
                f"{spatial}); got {spacing}."
            )
    else:
        spacing = (1.0,) * ndim
    vol = float(np.prod(spacing))

    if fidelity == "auto":
        # measured (benchmarks/results/real_images.md, every 3rd development image): mixtures
        # win on colour photographs of one object (horses 0.83 vs 0.51, skin lesions 0.86 vs
        # 0.34, blood cells 0.95 vs 0.91), means on grey images, also when stored as RGB,
        # and on the synthetic grid; on colour images of many objects, which the means
        # recognise themselves (physeg._regions.many_objects), the means win too (5 stained
        # nuclei tuning images: 0.85 vs 0.64; docs/methods/heat.md)
        from ..._regions import is_colour

        colour_axis = -1 if has_channels else None
        if classes == 2 and init == "auto" and init_labels is None \
                and is_colour(arr, colour_axis):
            fidelity = "mixtures"
        else:
            fidelity = "means"
        if fidelity == "mixtures":
            from ._mixtures import segment_colour_auto

            means_params = dict(
                classes=2, tau=tau, lam=lam, init="auto", reaction=reaction, max_iter=max_iter,
                tol=tol, fidelity="means", foreground=foreground, objects=objects,
                components=components, border_prior=border_prior, texture=texture,
                channel_axis=channel_axis, init_labels=None, workers=workers)

            def run_means(img, full_resolution, energy):
                return segment_heat.unchecked(img, spacing=spacing if full_resolution else None,
                                              rng=gen, return_energy=energy, **means_params)

            return segment_colour_auto(
                arr, spacing, run_means=run_means, probe_pixels=_PROBE_PIXELS, tau=tau,
                lam=lam, border_prior=border_prior, components=components, texture=texture,
                max_iter=max_iter, gen=gen, foreground=foreground, objects=objects,
                workers=workers, return_energy=return_energy)
    if fidelity == "mixtures":
        from ._mixtures import segment_mixtures

        return segment_mixtures(arr, has_channels, spacing, classes=classes, init=init,
                                init_labels=init_labels, tau=tau, lam=lam,
                                border_prior=border_prior, components=components,
                                texture=texture, max_iter=max_iter, gen=gen,
                                foreground=foreground, objects=objects, workers=workers,
                                return_energy=return_energy)
    f, mean_in, scale = _normalise(arr, has_channels)
    n_ch = f.shape[-1]

    # ---- initialisation -------------------------------------------------------------
    if init_labels is not None and init not in ("auto", "mask"):
        raise ValueError(
            f"init_labels is only used with init='mask' (or 'auto'); got init={init!r}. "
            "Drop init_labels or pass init='mask'."
        )
    if init == "auto":
        if init_labels is not None:
            init = "mask"
        elif n_ch == 1 and classes <= 4:
            init = "otsu"
        else:
            init = "kmeans"
    if init == "mask":
        if init_labels is None:
            raise ValueError(
                "init='mask' needs init_labels: a mask or label image of shape "
                f"{spatial} (nonzero = phase 1 for a binary run)."
            )
        lab0 = check_labels_like(init_labels, spatial, name="init_labels")
        if classes == 2:
            lab0 = lab0 > 0
        elif lab0.max() >= classes:
            raise ValueError(
                f"init_labels has label {int(lab0.max())} but classes={classes}; labels must "
                f"be 0..{classes - 1}."
            )
        labels_flat = np.ascontiguousarray(lab0, dtype=np.intp).reshape(-1)
        counts0 = np.bincount(labels_flat, minlength=classes)
        if np.any(counts0 == 0):
            empty = [int(k) for k in np.flatnonzero(counts0 == 0)]
            raise ValueError(
                f"init_labels has no pixel of phase(s) {empty}; every phase needs at least "
                "one pixel to define its mean (a binary mask must be neither empty nor full)."
            )
    else:
        # Cluster the heat-smoothed intensities: noise std drops by about sqrt(8 pi tau_init)
        # while the region means are kept, so the histogram modes separate even at low SNR.
        mult_init = heat_multiplier(spatial, _INIT_TAU_FACTOR * tau, spacing)
        smooth = heat_step(np.moveaxis(f, -1, 0), mult_init, workers=workers)
        s_flat = np.moveaxis(smooth, 0, -1).reshape(-1, n_ch)
        if init == "otsu":
            labels_flat = otsu_labels(s_flat, classes)
        else:
            labels_flat = kmeans_labels(s_flat, classes, gen)

    # ---- threshold dynamics ---------------------------------------------------------
    smooth = heat_smoother(spatial, tau, spacing, workers=workers)
    common = dict(lam=lam, tau=tau, reaction=reaction, max_iter=max_iter, tol=tol,
                  want_energy=return_energy, vol=vol)
    if classes == 2:
        res = run_binary(f, labels_flat.reshape(spatial) == 1, smooth, **common)
    else:
        res = run_multi(f, labels_flat.reshape(spatial), smooth, classes, **common)
    labels, means, counts = res["labels"], res["means"], res["counts"]

    # ---- which phase is which: the foreground rule ------------------------------------
    order = foreground_order(labels, means.sum(axis=1), foreground)
    lut = np.empty(classes, dtype=np.intp)
    lut[order] = np.arange(classes)
    out_dtype = np.uint8 if classes <= 255 else np.int32
    out = lut[labels].astype(out_dtype)
    if objects == "one" and classes == 2:
        out = keep_one_object(out)
    if not return_energy:
        return out
    means_in = means[order] * scale + mean_in[None, :]
    info = {
        "energy": res["energy"],
        "means": means_in,
        "counts": counts[order].astype(np.int64),
        "iterations": res["iterations"],
        "stop": res["stop"],
        "changed": res["changed"],
        "init": init,
    }
    return out, info


@defaults_from(LEARNED_FIT_PARAMS)
def fit_heat(
    images: Sequence[Any],
    masks: Sequence[Any] | None,
    *,
    learn: str,
    unlabelled: int | None,
    samples: int,
    trees: int,
    depth: int,
    adapt: float | None,
    border_feature: bool,
    prior: str,
    prior_weight: float | None,
    rng: Any,
    progress: Any = None,
    taus: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    lams: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
    **fixed: Any,
):
    """Fit heat on labelled images (``physeg.fit("heat", ...)``): learned fidelity or (τ, λ) grid.

    ``learn="features"`` (default; :mod:`._learned`): a random forest on multiscale pixel
    features learns p(k | x) from the masks (or scribbles, ``unlabelled=``), and
    the model segments by threshold dynamics with fidelity -log p and the heat-kernel
    perimeter (``tau``, ``lam`` in ``fixed``; defaults 1 px² and 4 px/nat), plus per-image
    colour mixtures weighted ``adapt`` (binary) and the no-label segmentation as a prior of
    ``prior_weight`` nats (both None = chosen at fit time, by cross-validation over the
    training images when there are two or more). Binary, with ``prior_weight`` None, the
    no-label result itself is a candidate too (``params["follow_prior"]``): chosen when it
    reaches Dice 0.85 on a single labelled image, or when it has the best held-out score, so
    labels do not make the result worse where the no-label model already fits them.
    Labels 0..K-1 are the distinct mask values
    other than ``unlabelled``, in increasing order. Other parameters: ``samples`` pixels per
    class and image (10..1e7), ``trees`` (1..500), ``depth`` (1..40), ``border_feature`` (the
    border geodesic distance as a feature), ``rng`` (seed of the sampling and the forest;
    None = 0), ``progress(done, total, message)`` per training image and for the forest.

    ``learn="grid"``, the no-label model's fit:
    Every (τ, λ) pair of the grid segments every image with the other parameters ``fixed``;
    the pair with the best mean score wins (ties: the first in grid order, i.e. the smallest τ
    and λ). Score: Dice of label 1 against ``mask > 0`` for K = 2 (so the object must be the
    brighter phase, the method's rule), pixel accuracy of the labels for K > 2. An image with
    one more axis than its mask is taken as colour with channels last.

    Parameters
    ----------
    images, masks : sequences of arrays
        Training images and their ground-truth masks / label images (same spatial shapes).
    taus, lams : sequences of float
        Grid of diffusion times (pixel²) and boundary weights to try.
    **fixed
        Other :func:`segment_heat` parameters, kept fixed (e.g. ``classes``, ``init``).

    Returns
    -------
    physeg.api.Model
        ``model.params`` holds the chosen ``tau`` and ``lam`` plus ``fixed``;
        ``model.info["grid"]`` lists every pair with its mean score.
    """
    from .._registry import Model

    if masks is None:
        raise ValueError("fitting 'heat' needs masks: physeg.fit('heat', images, masks).")
    if learn == "features":
        from ._learned import fit_learned

        other = sorted(set(fixed) - {"tau", "lam"})
        if other:
            raise ValueError(
                f"learn='features' uses tau and lam of the segmentation parameters; {other} "
                "belong to the no-label model: pass learn='grid' to search tau and lam with them."
            )
        return fit_learned(images, masks, unlabelled=unlabelled, samples=samples, trees=trees,
                           depth=depth, adapt=adapt, border_feature=border_feature, prior=prior,
                           prior_weight=prior_weight, tau=fixed.get("tau"), lam=fixed.get("lam"),
                           rng=0 if rng is None else rng, progress=progress)
    fixed = {k: v for k, v in fixed.items() if k not in ("tau", "lam")}
    classes = fixed.get("classes") or _DEFAULTS["classes"]
    pairs = []  # checked once, before the grid: a mask of another size names its pair
    for i, (img, msk) in enumerate(zip(images, masks, strict=True)):
        img = np.asarray(img)
        ca = channel_axis_from_mask(img, msk)
        spatial = img.shape[:-1] if ca is not None else img.shape
        pairs.append((img, check_labels_like(msk, spatial, name=f"masks[{i}]"), ca))
    grid = []
    for t in taus:
        for lm in lams:
            vals = []
            for img, msk, ca in pairs:
                lab = segment_heat(img, tau=float(t), lam=float(lm), channel_axis=ca, **fixed)
                if classes == 2:
                    a, b = lab == 1, msk > 0
                    denom = a.sum() + b.sum()
                    vals.append(2.0 * np.sum(a & b) / denom if denom else 1.0)
                else:
                    vals.append(float(np.mean(lab == msk)))
            grid.append({"tau": float(t), "lam": float(lm), "score": float(np.mean(vals))})
    best = max(grid, key=lambda g: g["score"])  # max keeps the first of equal scores
    params = {**fixed, "tau": best["tau"], "lam": best["lam"]}
    return Model("heat", params, {"grid": grid, "score": best["score"],
                                  "metric": "dice" if classes == 2 else "accuracy"})


def _load_model(data: dict[str, Any], path: Any):
    """A learned model (``state["learned"]``: checked arrays) or the grid fit's parameters."""
    from .._registry import Model

    if isinstance(data.get("state"), dict) and "learned" in data["state"]:
        from ._learned import learned_from_dict

        return learned_from_dict(data)
    return Model("heat", data.get("params", {}), data.get("info", {}))


register(
    Method(
        name="heat",
        func=segment_heat,
        params=HEAT_PARAMS,
        summary="regions of like intensity or colour with smooth boundaries, by heat-flow "
                "threshold dynamics; no labels needed, or learns from masks or scribbles",
        fit_func=fit_heat,
        load_func=_load_model,
        fit_params=LEARNED_FIT_PARAMS,
        supports_3d=True,
        supports_multichannel=True,
    )
)
