"""Region-wise noise models of seed 000 (eqs. 44–53, RGB eq. 58).

The shape :math:`S` (``mask`` True) and the background :math:`\\mathcal B` (``mask`` False)
get their own noise type and intensity (eq. 44):

.. math:: I^\\eta = \\mathcal N_S[I]\\,\\chi_S + \\mathcal N_{\\mathcal B}[I]\\,\\chi_{\\mathcal B},

and for colour images each channel :math:`k` separately (eq. 58). The four models, with
intensity parameter ``intensity`` named as in the kinetic paper (seed 000):

``"gaussian"`` (45–47), intensity :math:`s \\ge 0`
    :math:`I^\\eta = I + \\eta`, :math:`\\eta \\sim \\mathcal N(0, s^2)`.
``"uniform"`` (48–49), intensity :math:`a \\ge 0`
    :math:`I^\\eta = I + \\eta`, :math:`\\eta \\sim \\mathcal U[-a, a]` (variance :math:`a^2/3`).
``"speckle"`` (50), intensity :math:`s \\ge 0`
    :math:`I^\\eta = I + I\\,\\eta`, :math:`\\eta \\sim \\mathcal N(0, s^2)`: variance
    :math:`I^2 s^2`, so a zero-valued region stays clean.
``"poisson"`` (51–53), intensity :math:`\\kappa > 0`
    :math:`I^\\eta = k/\\kappa`, :math:`k \\sim \\mathrm{Poisson}(\\kappa I)`: mean :math:`I`,
    variance :math:`I/\\kappa`; *larger* :math:`\\kappa` means *less* noise. Needs
    :math:`I \\ge 0`.
``"none"``
    :math:`I^\\eta = I` (a clean region; intensity ignored).

Choices made where the paper left room:

* Intensity levels 1–4 (:data:`NOISE_LEVELS`) are our proposal (the paper's values were
  lost): Gaussian and speckle :math:`s \\in \\{0.1, 0.2, 0.3, 0.4\\}`, uniform
  :math:`a \\in \\{0.2, 0.4, 0.6, 0.8\\}`, Poisson :math:`\\kappa \\in \\{50, 20, 10, 5\\}`.
* The interval form :math:`[-a, a]` of the uniform density is inferred from the text.
* ``clip=True`` (default) clips the result to [0, 1], the intensity range the methods expect.
  The seed then renormalises by eq. (32) inside the method; that is the method's job, not the
  noise model's. Statistics tests use ``clip=False`` (clipping biases the mean near 0 and 1).
* Random numbers are drawn region by region in a fixed order (shape, then background, channel
  by channel), so the same ``rng`` seed gives the same noisy image.
* Only float images are accepted: the noise intensities are defined on [0, 1] grey levels,
  and rescaling an integer image silently would violate "no silent rescaling".
* :func:`noisy_shape` uses grey levels 1 / 0 for additive noise (our proposal) and
  0.8 / 0.2 for speckle and Poisson, whose noise vanishes where :math:`I = 0` (our
  suggestion "if speckle must also affect the background").
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from .._validate import as_rng, look_up_option

__all__ = ["KINDS", "NOISE_LEVELS", "add_noise", "noise_intensity", "noisy_shape"]

KINDS: tuple[str, ...] = ("gaussian", "uniform", "speckle", "poisson", "none")

#: Intensity levels 1..4 per noise kind (our proposal; the kinetic paper's values were lost).
NOISE_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian": (0.1, 0.2, 0.3, 0.4),
    "uniform": (0.2, 0.4, 0.6, 0.8),
    "speckle": (0.1, 0.2, 0.3, 0.4),
    "poisson": (50.0, 20.0, 10.0, 5.0),
}


def noise_intensity(kind: str, level: int) -> float:
    """Intensity parameter of ``kind`` at ``level`` (1..4, see :data:`NOISE_LEVELS`).

    Level 0 means no noise and returns 0.0 (``add_noise`` treats a zero intensity as clean for
    the additive kinds; for Poisson use ``kind="none"``).

    Examples
    --------
    >>> noise_intensity("poisson", 2)
    20.0
    """
    kind = look_up_option(kind, tuple(NOISE_LEVELS), what="noise kind")
    if isinstance(level, bool) or not isinstance(level, (numbers.Integral, np.integer)) \
            or not 0 <= level <= len(NOISE_LEVELS[kind]):
        raise ValueError(
            f"noise level must be an int in 0..{len(NOISE_LEVELS[kind])} "
            f"(0 = clean); got {level!r}."
        )
    return 0.0 if level == 0 else float(NOISE_LEVELS[kind][int(level) - 1])


def _per_channel(value: Any, n_ch: int, name: str) -> list:
    """Broadcast a scalar / str or a per-channel sequence to a list of length n_ch."""
    if isinstance(value, (str, numbers.Number, np.number)) or value is None:
        return [value] * n_ch
    seq = list(value)
    if len(seq) != n_ch:
        raise ValueError(
            f"{name} must be one value or a sequence of {n_ch} values (one per channel); "
            f"got {value!r}."
        )
    return seq


def _check_intensity(kind: str, intensity: Any, name: str) -> float:
    if kind == "none":
        return 0.0
    if intensity is None:
        raise ValueError(
            f"{name} is required for {kind!r} noise; e.g. {NOISE_LEVELS[kind][1]} "
            f"(levels 1..4: {NOISE_LEVELS[kind]})."
        )
    if isinstance(intensity, bool) or not isinstance(intensity, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a number; got {intensity!r}.")
    val = float(intensity)
    if not np.isfinite(val):
        raise ValueError(f"{name} must be finite; got {intensity!r}.")
    if kind == "poisson":
        if val <= 0:
            raise ValueError(
                f"{name} is the Poisson scale kappa and must be > 0 (larger = less noise, "
                f"levels {NOISE_LEVELS['poisson']}); got {intensity!r}."
            )
    elif val < 0:
        what = "half-width a" if kind == "uniform" else "standard deviation s"
        raise ValueError(f"{name} is the {kind} {what} and must be >= 0; got {intensity!r}.")
    return val


def _apply(values: np.ndarray, kind: str, intensity: float, gen: np.random.Generator) -> np.ndarray:
    """Noise model ``kind`` applied to the 1D float64 array ``values`` (a region)."""
    n = values.size
    if kind == "none" or n == 0:
        return values
    if kind == "gaussian":
        return values + intensity * gen.standard_normal(n)
    if kind == "uniform":
        return values + gen.uniform(-intensity, intensity, size=n)
    if kind == "speckle":
        return values + values * (intensity * gen.standard_normal(n))
    # poisson
    if values.min() < 0:
        raise ValueError(
            "Poisson noise needs non-negative intensities (k ~ Poisson(kappa * I)); the region "
            f"has values down to {values.min():g}. Shift the image into [0, 1] first."
        )
    return gen.poisson(intensity * values).astype(np.float64) / intensity


def add_noise(
    image: Any,
    mask: Any,
    *,
    kind: str | Sequence[str] = "gaussian",
    intensity: float | Sequence[float] | None = None,
    background_kind: str | Sequence[str] | None = None,
    background_intensity: float | Sequence[float] | None = None,
    rng: None | int | np.random.Generator = None,
    clip: bool = True,
) -> np.ndarray:
    """Add region-wise noise: one model in the shape, another in the background (eq. 44, 58).

    Parameters
    ----------
    image : ndarray of float, shape (rows, cols), (planes, rows, cols) or (..., C)
        Clean image, intensities in [0, 1] for the documented noise levels to make sense.
        A colour image is recognised by ``mask`` having the image's shape without the last
        axis (channels last). Never modified.
    mask : array_like of bool (or 0/1), the image's spatial shape
        True in the shape :math:`S`, False in the background :math:`\\mathcal B`.
    kind : str or sequence of str, default "gaussian"
        Noise model in the shape: ``"gaussian"``, ``"uniform"``, ``"speckle"``, ``"poisson"``
        or ``"none"`` (see the module docstring). A sequence gives one model per channel.
    intensity : float or sequence of float
        Shape noise intensity: Gaussian/speckle standard deviation ``s`` (>= 0), uniform
        half-width ``a`` (>= 0), Poisson scale ``kappa`` (> 0; larger = less noise). Raising
        ``s`` or ``a`` (or lowering ``kappa``) makes the image noisier. A sequence gives one
        value per channel. Required unless ``kind="none"``.
    background_kind : str or sequence, optional
        Noise model in the background; default: the same as ``kind``.
    background_intensity : float or sequence, optional
        Background intensity; default: the same as ``intensity`` when ``background_kind`` is
        not given (seed Test 3.2), else required.
    rng : None, int or numpy.random.Generator
        Source of randomness; the same seed gives the same noisy image.
    clip : bool, default True
        Clip the result to [0, 1]. Turn off to keep the exact noise statistics.

    Returns
    -------
    noisy : numpy.ndarray
        Same shape as ``image``; the image's float dtype (float32 stays float32).

    Raises
    ------
    TypeError
        Non-float image, non-numeric intensity.
    ValueError
        Mask shape mismatch, unknown kind, negative intensity, Poisson on negative values.

    Examples
    --------
    >>> from physeg.data.synthetic import shape_image
    >>> img, mask = shape_image("square", 32)
    >>> noisy = add_noise(img, mask, kind="gaussian", intensity=0.2,
    ...                   background_intensity=0.1, rng=0)
    >>> noisy.shape, noisy.dtype.name, bool(np.all(img == shape_image("square", 32)[0]))
    ((32, 32), 'float32', True)
    """
    arr = np.asarray(image)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"image has dtype {arr.dtype}; add_noise needs a float image with intensities in "
            "[0, 1] (e.g. skimage.util.img_as_float(image) or image / 255.0)."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values; replace them first.")
    m = np.asarray(mask)
    if m.dtype != bool:
        if not (np.issubdtype(m.dtype, np.number) and np.all((m == 0) | (m == 1))):
            raise ValueError(
                "mask must be boolean (or 0/1): True in the shape, False in the background."
            )
        m = m.astype(bool)
    if m.shape == arr.shape:
        colour = False
    elif arr.ndim >= 2 and m.shape == arr.shape[:-1]:
        colour = True
    else:
        raise ValueError(
            f"mask shape {m.shape} does not match image shape {arr.shape}; expected the "
            "image's shape (grey) or its shape without the last (channel) axis (colour)."
        )
    n_ch = arr.shape[-1] if colour else 1
    kinds = [look_up_option(k, KINDS, what="noise kind")
             for k in _per_channel(kind, n_ch, "kind")]
    ints = _per_channel(intensity, n_ch, "intensity")
    if background_kind is None:
        bkinds = kinds
        bints = ints if background_intensity is None else _per_channel(
            background_intensity, n_ch, "background_intensity")
    else:
        bkinds = [look_up_option(k, KINDS, what="background noise kind")
                  for k in _per_channel(background_kind, n_ch, "background_kind")]
        bints = _per_channel(background_intensity, n_ch, "background_intensity")
    ints = [_check_intensity(k, v, "intensity") for k, v in zip(kinds, ints, strict=True)]
    bints = [
        _check_intensity(k, v, "background_intensity")
        for k, v in zip(bkinds, bints, strict=True)
    ]
    gen = as_rng(rng)

    out = arr.astype(np.float64)  # a copy: the caller's array is never touched
    view = out.reshape(out.shape + (1,)) if not colour else out
    for c in range(n_ch):  # loop over channels (<= 4), vectorised over pixels
        chan = view[..., c]
        chan[m] = _apply(chan[m], kinds[c], ints[c], gen)
        chan[~m] = _apply(chan[~m], bkinds[c], bints[c], gen)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out.astype(arr.dtype, copy=False)


def noisy_shape(
    shape: str = "square",
    size: int | tuple[int, int] = 128,
    kind: str = "gaussian",
    level: int = 2,
    rng: None | int | np.random.Generator = None,
    *,
    background_level: int | None = None,
    channels: int | None = None,
    shape_value: float | Sequence[float] | None = None,
    background_value: float | Sequence[float] | None = None,
    clip: bool = True,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """A seed-000 test image: a centred shape with region-wise noise, and its exact mask.

    Parameters
    ----------
    shape : str, default "square"
        One of :data:`physeg.data.synthetic.SHAPES`.
    size : int or (rows, cols), default 128
    kind : {"gaussian", "uniform", "speckle", "poisson"}, default "gaussian"
        Noise model in both regions.
    level : int, default 2
        Shape noise level 1..4 (:data:`NOISE_LEVELS`; 0 = clean); higher = noisier.
    rng : None, int or numpy.random.Generator
    background_level : int, optional
        Background noise level 0..4; default equal to ``level`` (seed Test 3.2). Test 3.1
        uses a lower level in the background, e.g. ``level - 1``.
    channels : int or None
        None for grey; 3 for RGB with the same noise model applied channel by channel.
    shape_value, background_value : float or sequence, optional
        Clean grey levels; default 1 / 0 for additive noise and 0.8 / 0.2 for speckle and
        Poisson (whose noise vanishes at 0).
    clip : bool, default True
        Clip to [0, 1].
    dtype : floating dtype, default float32

    Returns
    -------
    image : numpy.ndarray, shape (rows, cols) or (rows, cols, C)
    mask : numpy.ndarray of bool, shape (rows, cols)

    Examples
    --------
    >>> img, mask = noisy_shape("triangle", 64, "speckle", 3, rng=1)
    >>> img.shape, int(mask.sum()) > 0
    ((64, 64), True)
    """
    from .synthetic import shape_image

    kind = look_up_option(kind, tuple(NOISE_LEVELS), what="noise kind")
    s_int = noise_intensity(kind, level)
    b_int = s_int if background_level is None else noise_intensity(kind, background_level)
    multiplicative = kind in ("speckle", "poisson")
    if shape_value is None:
        shape_value = 0.8 if multiplicative else 1.0
    if background_value is None:
        background_value = 0.2 if multiplicative else 0.0
    img, mask = shape_image(shape, size, shape_value=shape_value,
                            background_value=background_value, channels=channels, dtype=dtype)
    s_kind = kind if s_int > 0 else "none"
    b_kind = kind if b_int > 0 else "none"
    noisy = add_noise(img, mask, kind=s_kind, intensity=s_int, background_kind=b_kind,
                      background_intensity=b_int, rng=rng, clip=clip)
    return noisy, mask
