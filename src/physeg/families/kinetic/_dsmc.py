"""Particle model and its DSMC solver (Nanbu-Babovsky, Algorithm 1).

One particle per pixel: position ``x_i`` in the image's rectangle Omega (below) and feature
``c_i`` in [0, 1]^d. One time step of length ``dt`` applies, in this order (time splitting):

(a) space, rate ``space_rate`` (lambda_x): ``n_p = Sround(lambda_x N dt / (2 eps))`` disjoint
    random pairs interact by the binary rule (9)::

        x_i' = x_i + eps P(c_i, c_j) (x_j - x_i) + sqrt(2 eps sigma^2) D(x_i) eta_i,
        P = 1{|c_i - c_j| <= Delta},   D(x) = diag(sqrt(a_1^2 - x_1^2), sqrt(a_2^2 - x_2^2)),

    eta ~ N(0, I_2); a post-interaction position outside Omega is rejected (the particle keeps
    its pre-interaction position), so Omega is invariant.
(b) transport, rate ``transport_rate`` (lambda_T): ``c_i += lambda_T dt H(c_i)(chat_i - c_i)``
    with ``H(c) = diag(c_k (1 - c_k))`` (per-gap ``s (1 - s)`` for K wells) and ``chat_i``
    the mean feature of the particles within
    distance ``r`` of ``x_i`` (eq. 2, ``j = i`` included). Convex combination, admissible for
    ``lambda_T dt / 4 <= 1``.
(c) binarisation, rate ``binarise_rate`` (lambda_B): ``c_i -= lambda_B dt V'(c_i)`` (double or
    K-well potential, :mod:`._multiwell`), admissible for ``lambda_B dt L <= 1``.

Geometry: square pixels of side ``h = 2 / max(rows, cols)``, and Omega is exactly their union,
``[-a_1, a_1] x [-a_2, a_2]`` with ``a_1 = cols / max(rows, cols)``, ``a_2 = rows / max(rows,
cols)`` (the long side spans 2, so r keeps its meaning; a square image gives [-1, 1]^2).

Choices where the paper left room (and why):

- Feature updates (b), (c) default to the *mean-field* form above (every particle, weight
  ``lambda dt``), which is the low-variance equivalent of the Nanbu rule "interact with
  probability ``lambda dt / eps`` and jump by ``eps``". ``feature_update="nanbu"``
  gives the literal Nanbu rule. ``dt`` is reduced automatically to satisfy the admissibility
  bounds, and ``lambda_x dt <= eps`` (interaction probability <= 1) for the spatial step.
- Omega is the image's rectangle, not [-1, 1]^2 around it: in the square, the particles of a
  thin image diffused out of their band into the empty rest, and the local average needed a
  max(rows, cols)^2 grid (2 x 5000: 25 million cells for 10 000 particles). The diffusion
  ``D_k = sqrt(a_k^2 - x_k^2)`` vanishes at the rectangle's edges as sqrt(1 - x_k^2) does at
  +-1 (for a_k = 1 it is that one, so square images are unchanged), and it makes the motion
  along axis k the image of the square model's under ``x_k = a_k z_k`` (the drift is
  linear): the rejection rate is the square's, and the Beta quasi-equilibrium (28) holds per
  axis for ``(1 + x_k / a_k) / 2`` with mean ``M_k / B`` and the square's concentration (what
  :mod:`._macro` uses). The price is anisotropy in pixel units: the noise along a short axis
  is a_k times that along the long one. ``sqrt(1 - (x_k / a_k)^2)`` would keep the centre
  isotropic, but its steps along a short axis are as long as along the long one, so on a thin
  image most moves would leave the rectangle and be rejected whole (freezing the long axis
  too). The bounds on dt do not involve D (the drift is a convex combination, eps <= 1, and
  Omega is convex), so they are unchanged.
- The local average (2) is O(N log N) per step: particles are deposited (count and features)
  on the rows x cols pixel grid, which tiles Omega, the two fields are convolved with the disk
  of radius ``r`` by FFT (kernel transform computed once), or, for a disk of few rows on a
  small grid, as a sum of row boxes from running sums along the columns (the same sums,
  cheaper there: :data:`ROW_BOX_MAX`), and each particle reads the ratio in its cell. With
  positions at pixel centres this is exactly the disk mean over pixels.
- The pairs of a space step are drawn without a full permutation of the N particles
  (:func:`distinct_sample`): at the default rates 5 % of them interact per step.
- Default rates: the spatial aggregation is *slow* by default (``space_rate = 0.05``). The
  paper orders the rates space >> transport >> binarisation for its macroscopic limit, but
  fast aggregation moves similar-feature pixels to a common centre, so the ball of radius r no
  longer sees the image geometry and the mask degrades (as the paper warns; measured again in
  ``benchmarks/kinetic_paper.py``). Transport is fast (20) and binarisation slow (0.5), so
  noise is averaged out before the wells capture the features.
- Read-out: class of particle i is written at its ORIGINAL pixel; K = 2: ``mean_k c_k > 1/2``.
  With ``runs > 1`` the final features are averaged over independent runs, then read out
  (``segment_kinetic`` then takes the majority over a window: ``readout``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from . import _multiwell

#: K = 2: at most this many binarisation sub-steps per time step. A barrier near 0 or 1 makes
#: the well stiff (K(cbar) ~ cbar^-3): the invariance bound asked 763 per step on a 603 x 1272
#: dsb2018 image (barrier 0.072, 15 s). Past the cap each sub-step is clipped to [0, 1]: Euler
#: on the double well moves c from the barrier towards its well, so it can only overshoot 0
#: or 1 and no particle changes side. The 4 dsb2018 tuning images on the intensities (seed 0): Dice
#: 0.8974 / 0.8782 / 0.1362 / 0.1945 -> 0.8974 / 0.8782 / 0.1365 / 0.1945, 1.6-4.1 -> 0.6-0.9
#: CPU s. K > 2 keeps the bound (an overshoot could enter the next gap).
MAX_BINARY_SUBSTEPS = 16
#: disks of a radius of 1 cell, and of up to ROW_BOX_MAX cells on grids of at most
#: ROW_BOX_CELLS cells, are summed as row boxes, the others by FFT. Timed per local average
#: (``benchmarks/results/kinetic_fast_paths.md``): on 60² and 120² grids the row boxes take
#: 0.69-0.90 of the FFT's time up to 3 cells and 0.89-1.21 from 5 on; on 256² 0.88 at 1
#: cell, 0.96 at 2, 1.26 at 3
ROW_BOX_MAX = 3
ROW_BOX_CELLS = 20_000

__all__ = [
    "KineticParams",
    "Particles",
    "image_features",
    "make_particles",
    "LocalAverager",
    "space_step",
    "sround",
    "simulate",
    "run_particle_model",
]


@dataclasses.dataclass
class KineticParams:
    """Parameters of the particle model (defaults = ``physeg.segment(method="kinetic")``).

    Attributes
    ----------
    delta : float
        Bounded-confidence threshold Delta in feature space (0..sqrt(d)); larger = more pairs
        aggregate in space.
    sigma : float
        Spatial diffusion sigma (0..); larger = positions spread more.
    radius : float
        Radius r of the local-average ball, in Omega units (long side 2); larger = stronger
        denoising, rounder corners.
    barriers : ndarray (d, K-1) or None
        Double/K-well barriers cbar per channel; ``None`` = multi-Otsu thresholds of the
        initial features (data-driven barrier).
    classes : int
        Number of wells / labels K (2 = the paper's binarisation).
    eps : float
        Quasi-invariant interaction strength epsilon of the spatial binary rule.
    dt, t_final : float
        Time step (reduced to the admissibility bounds) and final time T.
    space_rate, transport_rate, binarise_rate : float
        lambda_x, lambda_T, lambda_B: frequencies of the three operators.
    feature_update : {"mean", "nanbu"}
        Mean-field feature updates or the literal Nanbu rule.
    """

    delta: float = 0.3
    sigma: float = 0.1
    radius: float = 0.06
    barriers: np.ndarray | None = None
    classes: int = 2
    eps: float = 0.05
    dt: float = 0.05
    t_final: float = 4.0
    space_rate: float = 0.05
    transport_rate: float = 20.0
    binarise_rate: float = 0.5
    feature_update: str = "mean"


@dataclasses.dataclass
class Particles:
    """State of the particle system: positions (N, 2), features (N, d), grid geometry.

    ``extent`` = (a_1, a_2): Omega = [-a_1, a_1] x [-a_2, a_2] (x_1 along the columns, x_2 up
    the rows); the default is the square [-1, 1]^2.
    """

    x: np.ndarray
    c: np.ndarray
    shape: tuple[int, int]
    h: float  # pixel / grid cell size in Omega units
    x0: np.ndarray  # initial positions (pixel centres)
    extent: tuple[float, float] = (1.0, 1.0)


def image_features(image: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """Features (32): per-channel min-max normalisation to [0, 1]; returns (rows, cols, d).

    A constant channel maps to 0.5. The caller's array is not modified.
    """
    img = np.asarray(image, dtype=np.float64)
    if channel_axis is None:
        img = img[..., None]
    elif img.shape[-1] == 4:  # alpha carries no intensity
        img = img[..., :3]
    lo = img.min(axis=(0, 1), keepdims=True)
    hi = img.max(axis=(0, 1), keepdims=True)
    span = hi - lo
    out = np.where(span > 0, (img - lo) / np.where(span > 0, span, 1.0), 0.5)
    return np.clip(out, 0.0, 1.0)


def make_particles(features: np.ndarray) -> Particles:
    """One particle per pixel at its centre; Omega is the pixels' union (module notes)."""
    n1, n2 = features.shape[:2]
    long_side = max(n1, n2)
    h = 2.0 / long_side
    rows, cols = np.mgrid[0:n1, 0:n2]
    x = np.stack(
        [(cols.ravel() + 0.5 - n2 / 2.0) * h, (n1 / 2.0 - rows.ravel() - 0.5) * h], axis=1
    )
    c = features.reshape(n1 * n2, -1).astype(np.float64, copy=True)
    return Particles(x=x, c=c, shape=(n1, n2), h=h, x0=x.copy(),
                     extent=(n2 / long_side, n1 / long_side))


class LocalAverager:
    """chat_i of eq. (2) in O(N log N): grid deposit, FFT disk filter, gather.

    The grid is the image's own: rows x cols cells of side h = 2 / max(rows, cols), which tile
    Omega exactly. The disk holds the cells whose centre offset is <= r; along an axis of n
    cells it is cropped to offsets <= n - 1 (a larger one meets no particle, Omega being
    invariant), so the zero-padded FFT has at most about (3 rows) x (3 cols) cells whatever r
    and the aspect ratio, and (rows + 2R) x (cols + 2R) for the usual R = r / h < n.

    Parameters
    ----------
    shape : (int, int)
        Image shape (rows, cols).
    radius : float
        Ball radius r in Omega units (the long side spans 2).
    method : {"auto", "row boxes", "fft"}
        How the disk sums are computed; both give the same sums to round-off (1e-14).
        ``"auto"``: row boxes for a radius of 1 cell, and up to ``ROW_BOX_MAX`` cells on grids
        of at most ``ROW_BOX_CELLS`` cells, where they are the faster; the FFT otherwise.
    """

    def __init__(self, shape: tuple[int, int], radius: float, method: str = "auto"):
        from scipy import fft as sfft

        self._fft = sfft
        rows, cols = (int(n) for n in shape)
        long_side = max(rows, cols)
        self.shape = (rows, cols)
        self.h = 2.0 / long_side
        self.extent = (cols / long_side, rows / long_side)
        rc = radius / self.h
        R = int(np.floor(rc + 1e-9))
        self.R = (min(R, rows - 1), min(R, cols - 1))  # rows, columns
        off_r = np.arange(-self.R[0], self.R[0] + 1)
        off_c = np.arange(-self.R[1], self.R[1] + 1)
        disk = (off_r[:, None] ** 2 + off_c[None, :] ** 2 <= rc * rc + 1e-9).astype(np.float64)
        # a disk of few rows is summed as row boxes (running sums along the columns) on the
        # image's own grid, where that is cheaper than the FFT (ROW_BOX_MAX)
        if method not in ("auto", "row boxes", "fft"):
            raise ValueError(f"method must be 'auto', 'row boxes' or 'fft'; got {method!r}.")
        self.row_box = method == "row boxes" or method == "auto" and (
            self.R[0] <= 1 or self.R[0] <= ROW_BOX_MAX and rows * cols <= ROW_BOX_CELLS)
        if self.row_box:
            self.half_widths = (disk.sum(axis=1).astype(np.int64) - 1) // 2
            self.nfft = (rows + 2 * self.R[0], cols + 2 * self.R[1] + 1)
            return
        self.nfft = (sfft.next_fast_len(rows + 2 * self.R[0], real=True),
                     sfft.next_fast_len(cols + 2 * self.R[1], real=True))
        kern = np.zeros(self.nfft)
        kern[: disk.shape[0], : disk.shape[1]] = disk
        self.kf = sfft.rfft2(kern)

    def cells(self, x: np.ndarray) -> np.ndarray:
        """Flat grid index of each position (row from the top, column from the left)."""
        rows, cols = self.shape
        a1, a2 = self.extent
        # np.minimum / np.maximum rather than np.clip: the same values, without np.clip's
        # per-call overhead, which shows on the small grids this runs on every step
        col = ((x[:, 0] + a1) / self.h).astype(np.int64)
        row = ((a2 - x[:, 1]) / self.h).astype(np.int64)
        np.minimum(np.maximum(col, 0, out=col), cols - 1, out=col)
        np.minimum(np.maximum(row, 0, out=row), rows - 1, out=row)
        row *= cols
        row += col
        return row

    def padded(self, cells: np.ndarray) -> np.ndarray:
        """The cells' flat index in the zero-padded FFT grid, where the filtered fields are
        read (offset by the disk's half-widths); the row-box path reads the image's grid."""
        if self.row_box:
            return cells
        cols = self.shape[1]
        return (cells // cols + self.R[0]) * self.nfft[1] + cells % cols + self.R[1]

    def __call__(self, x: np.ndarray, c: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        idx = self.cells(x) if cells is None else cells
        counts = np.bincount(idx, minlength=self.shape[0] * self.shape[1])
        return self.mean(c, idx, self.padded(idx), counts)

    def mean(self, c: np.ndarray, cells: np.ndarray, padded: np.ndarray,
             counts: np.ndarray) -> np.ndarray:
        """chat from the particles' grid cells, their :meth:`padded` indices and the particle
        count of every cell (what :func:`simulate` keeps up to date between steps)."""
        rows, cols = self.shape
        n_cells = rows * cols
        d = c.shape[1]
        # the fields are deposited straight into the zero-padded grid: for the FFT at its
        # origin (what rfft2 would pad); for the row boxes offset by the disk's half-widths
        # and a leading zero column, so that the running sum along the columns gives every
        # row box
        top, left = (self.R[0], self.R[1] + 1) if self.row_box else (0, 0)
        fields = np.zeros((d + 1,) + self.nfft)
        inner = fields[:, top:top + rows, left:left + cols]
        inner[0] = counts.reshape(rows, cols)
        for k in range(d):
            inner[k + 1] = np.bincount(cells, weights=c[:, k],
                                       minlength=n_cells).reshape(rows, cols)
        conv = self._row_boxes(fields) if self.row_box else self._fft_disk(fields)
        conv = conv.reshape(d + 1, -1)
        num = conv[1:, padded].T
        den = conv[0, padded][:, None]
        # the particle itself is always in its own ball, so den >= 1 up to round-off
        out = np.maximum(den, 0.5)
        np.divide(num, out, out=num)
        return np.minimum(np.maximum(num, 0.0, out=num), 1.0, out=num)

    def _fft_disk(self, fields: np.ndarray) -> np.ndarray:
        """The disk sums of the zero-padded fields, by FFT, on the padded grid."""
        spec = self._fft.rfft2(fields)
        spec *= self.kf
        return self._fft.irfft2(spec, s=self.nfft, overwrite_x=True)

    def _row_boxes(self, fields: np.ndarray) -> np.ndarray:
        """The disk sums on the image's grid, as a sum over the disk's rows of row boxes
        (a row of half-width w is a difference of two running sums along the columns)."""
        rows, cols = self.shape
        r1 = self.R[1]
        run = np.cumsum(fields, axis=2, out=fields)
        out = np.zeros((fields.shape[0], rows, cols))
        boxes: dict[int, np.ndarray] = {}
        for k, w in enumerate(self.half_widths.tolist()):  # one per disk row
            if w not in boxes:
                boxes[w] = (run[:, :, r1 + w + 1:r1 + w + 1 + cols]
                            - run[:, :, r1 - w:r1 - w + cols])
            out += boxes[w][:, k:k + rows]
        return out


def distinct_sample(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``k`` distinct indices of ``range(n)`` in random order: a uniformly random ordered
    sample without replacement, as ``rng.permutation(n)[:k]`` is.

    A pair step draws 2 n_p = lambda_x dt / eps N of the N particles, 5 % at the defaults;
    a full permutation of N for them cost half the step. For k <= n / 4 the indices are the
    first k distinct values of a stream of uniform draws (sequential sampling without
    replacement), whose length ``k + 2 k^2 / n + 16`` exceeds the expected k^2 / (2 n)
    repeats; a stream with too few distinct values is drawn again, which keeps the sample
    uniform (the event is symmetric in the indices). Larger k use the permutation.
    """
    if 4 * k > n:
        return rng.permutation(n)[:k]
    length = k + (2 * k * k) // max(n, 1) + 16
    while True:
        stream = rng.integers(0, n, size=length)
        _, first = np.unique(stream, return_index=True)
        if first.size >= k:
            first.sort()
            return stream[first[:k]]


def sround(y: float, rng: np.random.Generator) -> int:
    """Stochastic rounding: floor(y) + 1 with probability y - floor(y)."""
    fl = np.floor(y)
    return int(fl + (rng.random() < y - fl))


def space_step(
    p: Particles,
    *,
    delta: float,
    sigma: float,
    eps: float,
    prob: float,
    rng: np.random.Generator,
    diffusion: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> int:
    """One Nanbu-Babovsky step of the spatial binary interaction (9), in place.

    ``prob`` = lambda_x dt / eps is each particle's interaction probability (<= 1);
    ``n_p = Sround(prob N / 2)`` disjoint pairs are drawn without repetition. Returns n_p.
    ``diffusion(x, c) -> (N, 2)`` overrides D (default sqrt(a_k^2 - x_k^2) on
    Omega = [-a_1, a_1] x [-a_2, a_2], ``p.extent``; D_c = 1).
    """
    return _pair_step(p, delta, sigma, eps, prob, rng, diffusion).size // 2


def _pair_step(p: Particles, delta: float, sigma: float, eps: float, prob: float,
               rng: np.random.Generator,
               diffusion: Callable[[np.ndarray, np.ndarray], np.ndarray] | None) -> np.ndarray:
    """:func:`space_step`; returns the indices of the paired particles (i's, then j's)."""
    n = p.x.shape[0]
    n_p = min(sround(prob * n / 2.0, rng), n // 2)
    if n_p == 0:
        return np.empty(0, np.int64)
    perm = distinct_sample(rng, n, 2 * n_p)
    # the i's and the j's stacked: row k's partner is row k + n_p (mod 2 n_p)
    x, c = p.x[perm], p.c[perm]
    dc = c[:n_p] - c[n_p:]
    dc *= dc
    P = (np.sqrt(np.sum(dc, axis=1)) <= delta).astype(np.float64)
    eta = rng.standard_normal((2 * n_p, 2))  # the (2, n_p, 2) draws of i, then j
    amp = np.sqrt(2.0 * eps) * sigma
    ext = np.asarray(p.extent, dtype=np.float64)
    if diffusion is None:
        D = ext**2 - x**2
        np.sqrt(np.maximum(D, 0.0, out=D), out=D)
    else:
        D = np.concatenate([diffusion(x[:n_p], c[:n_p]), diffusion(x[n_p:], c[n_p:])])
    drift = np.concatenate([x[n_p:], x[:n_p]])
    drift -= x
    drift *= np.concatenate([eps * P, eps * P])[:, None]
    D *= amp
    D *= eta
    drift += x
    drift += D  # x + eps P (x_partner - x) + amp D eta
    ok = np.abs(drift) <= ext
    ok = ok[:, 0] & ok[:, 1]
    p.x[perm] = np.where(ok[:, None], drift, x)
    return perm


def auto_barriers(c: np.ndarray, classes: int) -> np.ndarray:
    """Default barriers: multi-Otsu thresholds of each channel's initial features.

    Clipped strictly inside their gaps ``(t_{k-1}, t_k)`` (5%-95% of the gap) so the K-well
    potential stays admissible.
    """
    from skimage.filters import threshold_multiotsu, threshold_otsu

    t = _multiwell.targets(classes)
    d = c.shape[1]
    out = np.empty((d, classes - 1))
    for k in range(d):
        v = c[:, k]
        if np.ptp(v) <= 0:
            th = t[:-1] + 0.5 * np.diff(t)
        elif classes == 2:
            th = np.array([threshold_otsu(v, nbins=256)])
        else:
            try:
                th = np.asarray(threshold_multiotsu(v, classes=classes, nbins=256), dtype=float)
            except ValueError:
                th = t[:-1] + 0.5 * np.diff(t)
        out[k] = th
    lo = t[:-1] + 0.05 * np.diff(t)
    hi = t[:-1] + 0.95 * np.diff(t)
    return np.clip(out, lo, hi)


def phase_midpoints(features: np.ndarray, radius: float) -> np.ndarray:
    """Barriers (d, 1) of a binary image's intensities: per channel, the midpoint
    (mu_0 + mu_1) / 2 of the mean local averages chat (eq. 2, ball of radius ``radius``) of
    the two phases of Otsu's partition of chat; clipped to 5-95 % of [0, 1].

    The transport drives each feature towards chat, so the wells should split chat where a
    pixel is as near one phase's mean as the other's (the piecewise-constant, Chan-Vese,
    boundary). The seed's symmetric images put it near 0.5 (0.47-0.49 for the 256^2 shapes
    at noise 0.3); grey nuclei dimmer than a few saturated pixels put it at 0.07-0.23 (seven
    dsb2018 images), where 0.5 sent every nucleus to the lower well (Dice 0.00-0.33); the
    seed's speckle and Poisson images (0.8 on 0.2, skewed noise) gain too
    (``docs/methods/kinetic.md``). On chat rather than on the pixels because an object
    narrower than the ball is averaged with its surroundings: two discs of radius 5 px at
    256^2 (noise 0.1) score Dice 0.80 here, 0.00 with the midpoint of the pixels' phases
    (smoothed by 1 px) and 0.65 at 0.5. Otsu's threshold itself is no substitute: under heavy
    noise and a small object it is biased into the background (the 256^2 disc at noise 0.3:
    Dice 0.26).
    """
    from skimage.filters import threshold_otsu

    p = make_particles(features)
    chat = LocalAverager(p.shape, radius)(p.x, p.c)
    out = np.full((chat.shape[1], 1), 0.5)
    for k in range(chat.shape[1]):
        field = chat[:, k]
        if np.ptp(field) <= 0:
            continue
        upper = field > threshold_otsu(field, nbins=256)
        if upper.all() or not upper.any():
            continue
        out[k, 0] = 0.5 * (field[upper].mean() + field[~upper].mean())
    return np.clip(out, 0.05, 0.95)


def stable_dt(params: KineticParams, barriers: np.ndarray) -> float:
    """Largest admissible step <= params.dt (Nanbu probability <= 1).

    The binarisation bound lambda_B dt L <= 1 is met by sub-stepping (see :func:`simulate`),
    so a stiff well (barrier near 0 or 1, where K(cbar) ~ cbar^-3) does not shrink the step of
    the O(N log N) transport part.
    """
    dt = float(params.dt)
    if params.transport_rate > 0:
        dt = min(dt, 4.0 / params.transport_rate)  # lambda_T dt max H <= 1
    if params.space_rate > 0:
        dt = min(dt, params.eps / params.space_rate)
    if params.feature_update == "nanbu":  # interaction probabilities lambda dt / eps <= 1
        for lam in (params.transport_rate, params.binarise_rate):
            if lam > 0:
                dt = min(dt, params.eps / lam)
    return dt


def simulate(
    p: Particles,
    params: KineticParams,
    barriers: np.ndarray,
    rng: np.random.Generator,
    *,
    callback: Callable[[float, Particles], None] | None = None,
    record_every: int = 0,
    diffusion: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Particles:
    """Run Algorithm 1 on ``p`` in place up to ``params.t_final``; return ``p``."""
    dt = stable_dt(params, barriers)
    n_steps = int(np.ceil(params.t_final / dt - 1e-9))
    dt = params.t_final / max(n_steps, 1)
    avg = LocalAverager(p.shape, params.radius) if params.transport_rate > 0 else None
    if avg is not None:  # grid cells, padded indices and counts, updated as particles move
        cells = avg.cells(p.x)
        padded = avg.padded(cells)
        counts = np.bincount(cells, minlength=p.shape[0] * p.shape[1]).astype(np.float64)
    nanbu = params.feature_update == "nanbu"
    # binarisation sub-steps: lambda_B (dt / n_sub) L <= 1 keeps [0, 1]^d invariant
    lip = _multiwell.lipschitz(barriers, params.classes)
    n_sub = max(1, int(np.ceil(params.binarise_rate * dt * lip - 1e-12)))
    # K = 2 with a stiff well: fewer sub-steps, each clipped to [0, 1] (see the constant)
    clip_each = params.classes == 2 and n_sub > MAX_BINARY_SUBSTEPS
    if clip_each:
        n_sub = MAX_BINARY_SUBSTEPS
    sub = params.binarise_rate * dt / n_sub
    lam_x, lam_t, lam_b = params.space_rate, params.transport_rate, params.binarise_rate
    eps = params.eps
    well = _multiwell.double_well(barriers) if params.classes == 2 else None
    if callback is not None:
        callback(0.0, p)
    for n in range(n_steps):
        if lam_x > 0:
            moved = _pair_step(p, params.delta, params.sigma, eps, lam_x * dt / eps, rng,
                               diffusion)
            if avg is not None and moved.size:
                new = avg.cells(p.x[moved])
                old = cells[moved]
                np.subtract.at(counts, old, 1.0)
                np.add.at(counts, new, 1.0)
                cells[moved] = new
                padded[moved] = avg.padded(new)
        if lam_t > 0:
            chat = avg.mean(p.c, cells, padded, counts)
            if params.classes == 2:
                H = 1.0 - p.c
                H *= p.c
            else:
                H = _multiwell.modulation(p.c, params.classes)
            if nanbu:
                hit = rng.random(p.c.shape[0]) < lam_t * dt / eps
                step = min(eps, 4.0)
                p.c[hit] += step * H[hit] * (chat[hit] - p.c[hit])
            else:  # c += lam_T dt H (chat - c), in place
                H *= lam_t * dt
                chat -= p.c
                H *= chat
                p.c += H
        if lam_b > 0:
            if nanbu:
                g = _multiwell.grad_potential(p.c, barriers, params.classes)
                hit = rng.random(p.c.shape[0]) < lam_b * dt / eps
                p.c[hit] -= eps * g[hit]
            else:
                for _ in range(n_sub):
                    g = (well(p.c) if well is not None
                         else _multiwell.grad_potential(p.c, barriers, params.classes))
                    g *= sub
                    p.c -= g
                    if clip_each:
                        np.minimum(np.maximum(p.c, 0.0, out=p.c), 1.0, out=p.c)
        # round-off only: both updates are admissible (np.minimum / np.maximum: np.clip's
        # values without its per-call overhead)
        np.minimum(np.maximum(p.c, 0.0, out=p.c), 1.0, out=p.c)
        last = n + 1 == n_steps
        if callback is not None and (record_every <= 0 or (n + 1) % record_every == 0 or last):
            callback((n + 1) * dt, p)
    return p


def run_particle_model(
    features: np.ndarray,
    params: KineticParams,
    rng: np.random.Generator,
    *,
    runs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment a feature image (rows, cols, d): returns (labels, final features averaged over runs).

    Labels are written at the original pixel of each particle.
    """
    n1, n2, d = features.shape
    c0 = features.reshape(-1, d)
    barriers = params.barriers
    if barriers is None:
        barriers = auto_barriers(c0, params.classes)
    barriers = np.broadcast_to(np.asarray(barriers, dtype=float), (d, params.classes - 1))
    if params.feature_update == "nanbu" and params.eps * _multiwell.lipschitz(
        barriers, params.classes
    ) > 1.0:
        raise ValueError(
            f"eps={params.eps} violates the admissibility bound eps*L <= 1 of the binarisation "
            f"step (L={_multiwell.lipschitz(barriers, params.classes):.3g}); lower eps or use "
            "feature_update='mean'."
        )
    acc = np.zeros_like(c0)
    for _ in range(int(runs)):
        p = make_particles(features)
        simulate(p, params, barriers, rng)
        acc += p.c
    cbar = acc / int(runs)
    labels = _multiwell.read_out(cbar, params.classes).reshape(n1, n2)
    return labels, cbar.reshape(n1, n2, d)
