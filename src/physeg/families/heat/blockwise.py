r"""Blockwise segmentation of images larger than memory (dask ``map_overlap``).

Supported method: ``heat`` (threshold dynamics, :mod:`physeg.families.heat`). Inputs: numpy or
dask arrays, zarr arrays/folders (``.zarr``), TIFF files (tiled or multi-page; read lazily through
tifffile's zarr store). Outputs: a numpy array, a zarr folder or a tiled TIFF, written block by
block, so the peak memory is a few blocks, not the image.

Method
------
One threshold-dynamics step (:func:`physeg.families.heat.segment_heat`) with the region means
:math:`c_k` and the normalisation of :math:`f` held fixed,
:math:`u^{new}=\arg\min_k |f-c_k|^2-\beta\,G_\tau*u_k`, :math:`\beta=2\lambda/\sqrt\tau`, depends
on the labels within a few :math:`\sigma=\sqrt{2\tau}` only. Blockwise we therefore (1) compute
the normalisation in one streaming pass, (2) fix the means (given as ``means=`` or estimated by
the in-memory ``heat`` on a subsampled copy), (3) initialise with the nearest mean of
:math:`G_{4\tau}*f`, and (4) iterate the fixed-means step, one ``map_overlap`` pass per iteration
with a halo of ``ceil(6σ)`` pixels (truncation error below float32 resolution), recomputing only
blocks whose neighbourhood changed. The result equals :func:`heat_fixed_means` on the whole
image pixel for pixel; against the full ``heat`` (means re-estimated every step) the labels
agree up to a few boundary pixels. Intermediate labels live in a temporary uint8 zarr store;
default blocks are 2048 pixels per axis. The derivation and the tests: ``docs/methods/heat.md``.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "open_array",
    "heat_fixed_means",
    "heat_halo",
    "segment_blockwise",
    "peak_rss_mb",
]

_INIT_TAU_FACTOR = 4.0  # as physeg.families.heat: initial clustering of G_{4 tau} * f
_HALO_SIGMAS = 6.0


def heat_halo(tau: float, spacing: Sequence[float] | None = None) -> int:
    """Halo (pixels per axis) for one heat step of time ``tau``: ``ceil(6 sqrt(2 tau) / h)``."""
    h = 1.0 if spacing is None else min(float(s) for s in spacing)
    return int(math.ceil(_HALO_SIGMAS * math.sqrt(2.0 * float(tau)) / h))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``VmHWM``; ru_maxrss as a fallback)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- inputs


def open_array(source: Any, *, chunks: int | Sequence[int] = 2048, channel_axis: int | None = None):
    """Open ``source`` lazily as a dask array (see :func:`_open`; a TIFF stays open until
    the array is garbage-collected)."""
    return _open(source, chunks=chunks, channel_axis=channel_axis)[0]


def _open(source: Any, *, chunks: int | Sequence[int] = 2048, channel_axis: int | None = None):
    """Open ``source`` lazily as a dask array with spatial chunks of ``chunks`` pixels.

    Parameters
    ----------
    source : numpy/dask/zarr array, or path
        ``.zarr`` folder (a zarr array), ``.tif``/``.tiff`` (tiled or multi-page; read through
        tifffile's zarr store, so only the tiles a block needs are decoded), or ``.npy``
        (memory-mapped).
    chunks : int or sequence of int
        Block size per spatial axis (larger blocks: fewer halo pixels recomputed, more memory).
    channel_axis : int or None
        Colour axis; it is moved last and kept in one chunk.

    Returns
    -------
    arr : dask.array.Array
        Channels last, spatial axes chunked.
    close : callable
        Releases the open file (TIFF); call it when done.
    """
    from ..._optional import require

    da = require("dask.array", feature="blockwise segmentation")
    close = _nothing
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{str(path)!r} does not exist; expected a .zarr folder, a "
                                    "TIFF file or a .npy file.")
        suffix = path.suffix.lower()
        if suffix in (".tif", ".tiff"):
            import tifffile

            zarr = require("zarr", feature="reading a TIFF blockwise")
            store = tifffile.imread(path, aszarr=True)
            close = store.close
            arr = da.from_zarr(zarr.open(store, mode="r"))
        elif suffix == ".npy":
            arr = da.from_array(np.load(path, mmap_mode="r"))
        else:
            zarr = require("zarr", feature="reading a zarr array")
            z = zarr.open(str(path), mode="r")
            if not hasattr(z, "shape"):
                raise ValueError(f"{str(path)!r} is a zarr group, not an array; pass the array's "
                                 "folder (e.g. 'image.zarr/0').")
            arr = da.from_zarr(z)
    elif isinstance(source, da.Array):
        arr = source
    else:
        arr = da.from_array(source) if hasattr(source, "shape") else da.from_array(
            np.asarray(source))
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"image has dtype {arr.dtype}; expected integers or real floats.")
    if channel_axis is not None:
        arr = da.moveaxis(arr, channel_axis, -1)
    nsp = arr.ndim - (channel_axis is not None)
    if nsp not in (2, 3):
        raise ValueError(
            f"blockwise segmentation needs a 2D or 3D image (plus an optional channel axis); got "
            f"shape {arr.shape} with channel_axis={channel_axis}."
        )
    sp = (int(chunks),) * nsp if np.isscalar(chunks) else tuple(int(c) for c in chunks)
    if len(sp) != nsp or min(sp) < 1:
        raise ValueError(f"chunks must be a positive int or one per spatial axis ({nsp}); got "
                         f"{chunks!r}.")
    # balanced blocks: n_blocks = ceil(n / c), then equal sizes (no sliver at the end)
    sp = tuple(-(-n // -(-n // c)) for n, c in zip(arr.shape[:nsp], sp, strict=True))
    return arr.rechunk(sp + ((-1,) if channel_axis is not None else ())), close


def _nothing() -> None:
    return None


# --------------------------------------------------------------------------- the dynamics


def _channels(f: np.ndarray, has_channels: bool) -> np.ndarray:
    return f if has_channels else f[..., None]


def _normalise_block(x: np.ndarray, center: np.ndarray, scale: float,
                     has_channels: bool) -> np.ndarray:
    """(x - center) / scale in float64, then float32, channels last (C = 1 for grey)."""
    return ((_channels(x, has_channels).astype(np.float64) - center) / scale).astype(np.float32)


def _fidelity(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """K = 2: |f-c1|^2 - |f-c0|^2 (up to nothing); K > 2: |f-c_k|^2 - |f|^2 per phase (K, ...)."""
    m32 = m.astype(np.float32)
    c2 = np.einsum("kc,kc->k", m, m).astype(np.float32)
    k = m.shape[0]
    if k == 2:
        d = m32[0] - m32[1]
        lin = 2.0 * f[..., 0] * d[0] if f.shape[-1] == 1 else 2.0 * (f @ d)
        return lin + (c2[1] - c2[0])
    sc = -2.0 * np.tensordot(m32, f, axes=([1], [f.ndim - 1]))
    return sc + c2.reshape((k,) + (1,) * (f.ndim - 1))


def _init_labels(f: np.ndarray, m: np.ndarray, tau: float, spacing) -> np.ndarray:
    """Nearest fixed mean of G_{4 tau} * f (uint8 labels)."""
    from ._mbo import heat_multiplier, heat_step

    spatial = f.shape[:-1]
    mult = heat_multiplier(spatial, _INIT_TAU_FACTOR * tau, spacing)
    smooth = np.moveaxis(heat_step(np.moveaxis(f, -1, 0), mult), 0, -1)
    fs = _fidelity(np.ascontiguousarray(smooth), m)
    if m.shape[0] == 2:
        return (fs < 0).astype(np.uint8)
    return np.argmin(fs, axis=0).astype(np.uint8)


def _step(f: np.ndarray, lab: np.ndarray, m: np.ndarray, tau: float, lam: float,
          spacing) -> np.ndarray:
    """One fixed-means threshold-dynamics step on a block (or the whole image)."""
    from ._mbo import heat_multiplier, heat_step

    k = m.shape[0]
    mult = heat_multiplier(lab.shape, tau, spacing)
    beta = np.float32(2.0 * lam / math.sqrt(tau))
    fs = _fidelity(f, m)
    if k == 2:
        psi = heat_step((lab == 1).astype(np.float32), mult)
        return (fs < beta * (2.0 * psi - 1.0)).astype(np.uint8)
    karange = np.arange(k, dtype=lab.dtype).reshape((k,) + (1,) * lab.ndim)
    psi = heat_step((lab[None] == karange).astype(np.float32), mult)
    return np.argmin(fs - beta * psi, axis=0).astype(np.uint8)


def _check_means(means: Any, classes: int | None, n_ch: int) -> np.ndarray:
    m = np.asarray(means, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2 or m.shape[1] != n_ch or m.shape[0] < 2 or not np.all(np.isfinite(m)):
        raise ValueError(
            f"means must be K >= 2 finite region means, shape (K,) for grey or (K, {n_ch}) for "
            f"{n_ch} channels, in the image's intensity units; got shape {m.shape}."
        )
    if classes is not None and m.shape[0] != classes:
        raise ValueError(f"got {m.shape[0]} means but classes={classes}; pass one mean per phase.")
    if m.shape[0] > 255:
        raise ValueError("blockwise heat supports at most 255 phases (uint8 labels).")
    order = np.argsort(m.sum(axis=1), kind="stable")  # label 0 = darkest, as segment_heat
    return m[order]


def _heat_param(name: str, value: Any) -> Any:
    """Validate one parameter against the ``heat`` method's schema (None: its default)."""
    from . import HEAT_PARAMS

    p = {q.name: q for q in HEAT_PARAMS}[name]
    return p.default if value is None else p.convert(value)


def _stats_in_memory(x: np.ndarray, has_channels: bool) -> tuple[np.ndarray, float]:
    feats = _channels(x, has_channels)
    flat = feats.reshape(-1, feats.shape[-1])
    center = flat.mean(axis=0, dtype=np.float64)
    sq = np.einsum("ic,ic->", flat.astype(np.float64), flat.astype(np.float64)) / flat.shape[0]
    return center, _scale_from(sq, center)


def _scale_from(mean_sq: float, center: np.ndarray) -> float:
    var = float(mean_sq) - float(np.dot(center, center))
    if not var > 0.0:
        raise ValueError(
            "the image is constant (zero variance); there is no boundary to find. Check that "
            "the right image or channel_axis was passed."
        )
    return math.sqrt(var)


def heat_fixed_means(
    image: Any,
    means: Any,
    *,
    tau: float | None = None,
    lam: float | None = None,
    max_iter: int = 300,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    center: Any = None,
    scale: float | None = None,
    return_info: bool = False,
):
    r"""Threshold dynamics with fixed region means, on a whole in-memory image.

    The reference for :func:`segment_blockwise`: the same steps (normalise, initialise with the
    nearest mean of :math:`G_{4\tau}*f`, iterate
    :math:`u\leftarrow\arg\min_k |f-c_k|^2-\beta\,G_\tau*u_k`, :math:`\beta=2\lambda/\sqrt\tau`,
    until no pixel changes) with one DCT over the whole image.

    Parameters
    ----------
    image : array_like
        2D or 3D image (channels on ``channel_axis``), any real dtype; not modified.
    means : array_like, shape (K,) or (K, C)
        Region means in the image's intensity units; labels follow their brightness order
        (label 0 = darkest), as in :func:`physeg.families.heat.segment_heat`.
    tau, lam : float, optional
        As in :func:`physeg.families.heat.segment_heat` (τ in pixel², λ a length relative to the
        image's standard deviation); None takes the ``heat`` method's defaults.
    max_iter : int
        Iteration cap; it stops earlier when no pixel changes.
    center, scale : optional
        Normalisation ``(image - center) / scale``; default: the image's per-channel mean and
        the square root of its total variance (as ``segment_heat``).
    return_info : bool
        Also return ``{"iterations", "stop", "changed"}``.

    Returns
    -------
    labels : numpy.ndarray of uint8
    """
    from ..._validate import check_image

    tau, lam = _heat_param("tau", tau), _heat_param("lam", lam)
    arr = check_image(image, channel_axis=channel_axis, allow_3d=True)
    has_ch = channel_axis is not None
    n_ch = arr.shape[-1] if has_ch else 1
    if center is None or scale is None:
        c0, s0 = _stats_in_memory(arr, has_ch)
        center = c0 if center is None else center
        scale = s0 if scale is None else scale
    center = np.asarray(center, dtype=np.float64).reshape(n_ch)
    m = (_check_means(means, None, n_ch) - center) / float(scale)
    spacing = None if spacing is None else tuple(float(s) for s in spacing)
    f = _normalise_block(arr, center, float(scale), has_ch)
    lab = _init_labels(f, m, tau, spacing)
    changed = []
    stop = "max_iter"
    for _ in range(int(max_iter)):
        new = _step(f, lab, m, tau, lam, spacing)
        changed.append(int(np.count_nonzero(new != lab)))
        lab = new
        if changed[-1] == 0:
            stop = "converged"
            break
    if return_info:
        return lab, {"iterations": len(changed), "stop": stop, "changed": changed}
    return lab


# --------------------------------------------------------------------------- blockwise driver


def _estimate_means(arr, classes: int, coarse: int, tau: float, lam: float,
                    has_ch: bool, rng: Any) -> np.ndarray:
    """Region means from the in-memory heat method on a subsampled copy of the image."""
    from . import segment_heat

    nsp = arr.ndim - has_ch
    factor = max(1, int(math.ceil(max(arr.shape[:nsp]) / coarse)))
    # every factor-th pixel: each block is read, subsampled and released (a block average would
    # need windows across block borders); region means are averages over many pixels, so the
    # noise of single pixels averages out in them anyway
    small = arr[(slice(None, None, factor),) * nsp]
    small = np.asarray(small.compute(scheduler="threads") if hasattr(small, "compute")
                       else small)
    _, info = segment_heat(small, classes=classes, tau=tau, lam=lam, fidelity="means",
                           channel_axis=-1 if has_ch else None, rng=rng, return_energy=True)
    return np.asarray(info["means"], dtype=np.float64)


def segment_blockwise(
    source: Any,
    out: str | os.PathLike | None = None,
    *,
    method: str = "heat",
    classes: int = 2,
    tau: float | None = None,
    lam: float | None = None,
    max_iter: int = 300,
    means: Any = None,
    chunks: int | Sequence[int] = 2048,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    coarse: int = 1024,
    num_workers: int | None = None,
    tmpdir: str | os.PathLike | None = None,
    rng: Any = None,
    return_info: bool = False,
    overwrite: bool = False,
):
    r"""Segment an image too large for memory, block by block (see the module notes).

    Parameters
    ----------
    source : array or path
        numpy/dask/zarr array or a ``.zarr`` folder, TIFF (tiled/multi-page) or ``.npy`` file.
    out : path or None
        ``None`` returns the labels as a numpy array (only for results that fit in memory);
        a ``.zarr`` path writes a uint8 zarr array; a ``.tif`` path writes a tiled, compressed
        TIFF strip by strip. Existing outputs are refused unless ``overwrite``.
    method : {"heat"}
        Only local methods can run blockwise; ``heat`` is the one supported so far.
    classes : int, default 2
        Number of phases K (2..255).
    tau, lam : float, optional
        As in :func:`physeg.families.heat.segment_heat` (None: its defaults). The halo is
        ``ceil(6 sqrt(2 tau))`` pixels.
    max_iter : int, default 300
        Iteration cap (one pass over the image per iteration; passes stop when no pixel changes).
    means : array_like, optional
        Region means (K,) or (K, C) in intensity units; default: estimated by ``heat`` on a
        subsampled copy (every k-th pixel) of at most ``coarse`` pixels per axis.
    chunks : int or sequence, default 2048
        Block size per spatial axis. Memory is about ``num_workers`` × 40 bytes × block pixels.
    channel_axis, spacing
        As for :func:`physeg.segment`.
    coarse : int, default 1024
        Largest axis of the copy used to estimate the means.
    num_workers : int, optional
        Threads of the dask threaded scheduler (default: dask's, the number of cores).
    tmpdir : path, optional
        Where the intermediate label arrays live (default: the system temporary folder).
    rng : None, int or Generator
        Passed to the mean estimate (``heat`` k-means init on colour images).
    return_info : bool
        Also return a dict: means, center, scale, halo, iterations, changed per pass, blocks
        recomputed per pass, seconds, peak RSS.

    Returns
    -------
    labels : numpy.ndarray of uint8, or the output path
    info : dict, with ``return_info=True``
    """
    from ..._optional import require
    from ..._validate import look_up_option

    require("dask.array", feature="blockwise segmentation")
    require("zarr", feature="blockwise segmentation")
    look_up_option(method, ("heat",), what="blockwise method (local methods only)")
    classes = _heat_param("classes", classes)
    tau, lam = _heat_param("tau", tau), _heat_param("lam", lam)
    max_iter = _heat_param("max_iter", max_iter)
    if out is not None:
        out = Path(out)
        if out.suffix.lower() not in (".zarr", ".tif", ".tiff"):
            raise ValueError(f"out must end in .zarr or .tif, got {str(out)!r}.")
        if out.exists() and not overwrite:
            raise FileExistsError(f"{str(out)!r} exists; pass overwrite=True or another path.")

    t_start = time.perf_counter()
    arr, close = _open(source, chunks=chunks, channel_axis=channel_axis)
    try:
        return _run(arr, out, method=method, classes=classes, tau=tau, lam=lam,
                    max_iter=max_iter, means=means, channel_axis=channel_axis,
                    spacing=spacing, coarse=coarse, num_workers=num_workers, tmpdir=tmpdir,
                    rng=rng, return_info=return_info, t_start=t_start)
    finally:
        close()


def _run(arr, out, *, method, classes, tau, lam, max_iter, means, channel_axis, spacing,
         coarse, num_workers, tmpdir, rng, return_info, t_start):
    import dask.array as da
    from scipy.ndimage import maximum_filter

    has_ch = channel_axis is not None
    nsp = arr.ndim - has_ch
    n_ch = arr.shape[-1] if has_ch else 1
    spacing = None if spacing is None else tuple(float(s) for s in spacing)
    halo = heat_halo(tau, spacing)
    halo_init = heat_halo(_INIT_TAU_FACTOR * tau, spacing)
    if min(arr.shape[:nsp]) < 2:
        raise ValueError(f"image is too small: spatial shape {arr.shape[:nsp]}.")
    arr = arr.rechunk(_merge_small_chunks(arr.chunks, nsp, max(halo, halo_init)))
    sched = {"scheduler": "threads"}
    if num_workers is not None:
        sched["num_workers"] = int(num_workers)

    # pass 1: normalisation (float64 sums), as segment_heat's _normalise; one small result
    # per block (sum per channel, sum of squares), so no block outlives its task
    def block_sums(x):
        c = _channels(x, has_ch).reshape(-1, n_ch).astype(np.float64)
        out = np.concatenate([c.sum(axis=0), [np.einsum("ic,ic->", c, c)]])
        return out.reshape((1,) * x.ndim + (n_ch + 1,))[(0,) * (x.ndim - nsp)]

    sums = arr.map_blocks(block_sums, dtype=np.float64,
                          chunks=tuple((1,) * len(c) for c in arr.chunks[:nsp]) + ((n_ch + 1,),),
                          drop_axis=[nsp] if has_ch else None,
                          new_axis=[nsp]).compute(**sched)
    sums = sums.reshape(-1, n_ch + 1).sum(axis=0)
    npx = float(np.prod(arr.shape[:nsp]))
    center = sums[:n_ch] / npx
    scale = _scale_from(float(sums[n_ch]) / npx, center)
    t_stats = time.perf_counter()

    if means is None:
        means_in = _estimate_means(arr, classes, coarse, tau, lam, has_ch, rng)
    else:
        means_in = means
    means_in = _check_means(means_in, classes, n_ch)
    m = (means_in - center) / scale
    t_means = time.perf_counter()

    lab_chunks = arr.chunks[:nsp]
    grid = tuple(len(c) for c in lab_chunks)
    bounds = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in lab_chunks]

    def read_f(loc: tuple[int, ...], depth: int) -> np.ndarray:
        """The normalised image on block ``loc`` plus ``depth`` pixels on its inner sides.

        Each task reads its own padded region from the source (no image data flows between
        tasks), so memory stays at a few blocks per worker whatever the image size.
        """
        sl = tuple(slice(int(bounds[ax][loc[ax]]) - (depth if loc[ax] > 0 else 0),
                         int(bounds[ax][loc[ax] + 1]) + (depth if loc[ax] < grid[ax] - 1 else 0))
                   for ax in range(nsp))
        x = np.asarray(arr[sl].compute(scheduler="sync"))
        return _normalise_block(x, center, scale, has_ch)

    tmp = Path(tempfile.mkdtemp(prefix="physeg-blockwise-", dir=tmpdir))
    try:
        def init_block(_, block_info=None):
            loc = tuple(block_info[None]["chunk-location"])
            lab = _init_labels(read_f(loc, halo_init), m, tau, spacing)
            sl = tuple(slice(halo_init if loc[ax] > 0 else 0,
                             lab.shape[ax] - (halo_init if loc[ax] < grid[ax] - 1 else 0))
                       for ax in range(nsp))
            return np.ascontiguousarray(lab[sl])

        template = da.zeros(arr.shape[:nsp], chunks=lab_chunks, dtype=np.uint8)
        lab0 = da.map_blocks(init_block, template, dtype=np.uint8, chunks=lab_chunks)
        paths = [tmp / "a.zarr", tmp / "b.zarr"]
        da.to_zarr(lab0, str(paths[0]), overwrite=True, compute=True)
        cur = 0
        active = np.ones(grid, dtype=bool)
        changed_hist: list[int] = []
        blocks_hist: list[int] = []
        stop = "max_iter"
        for _ in range(max_iter):
            old = da.from_zarr(str(paths[cur])).rechunk(lab_chunks)
            act = active.copy()

            def step_block(lb, loc, _act=act):
                if not _act[loc]:
                    return lb[..., 0]
                return _step(read_f(loc, halo), lb[..., 0], m, tau, lam, spacing)

            # halo exchange of the labels by dask's overlap (map_overlap's machinery); the
            # image block with the same halo is read by the task itself (read_f)
            new = _apply_overlap(step_block, [old[..., None]], halo, lab_chunks, da)
            da.to_zarr(new, str(paths[1 - cur]), overwrite=True, compute=True)
            newz = da.from_zarr(str(paths[1 - cur])).rechunk(lab_chunks)
            counts = da.map_blocks(_count_changes, newz, old, dtype=np.int64,
                                   chunks=tuple((1,) * len(c) for c in lab_chunks)
                                   ).compute(**sched)
            changed_hist.append(int(counts.sum()))
            blocks_hist.append(int(act.sum()))
            cur = 1 - cur
            if changed_hist[-1] == 0:
                stop = "converged"
                break
            active = maximum_filter(counts > 0, size=3, mode="constant", cval=False)
        final = da.from_zarr(str(paths[cur])).rechunk(lab_chunks)
        t_iter = time.perf_counter()
        if out is None:
            result: Any = np.asarray(final.compute(**sched))
        elif out.suffix.lower() == ".zarr":
            if out.exists():
                shutil.rmtree(out)
            shutil.move(str(paths[cur]), str(out))
            result = out
        else:
            _write_tiled_tiff(final, out, sched)
            result = out
        t_end = time.perf_counter()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not return_info:
        return result
    info = {
        "method": method, "shape": list(arr.shape), "chunks": [int(c[0]) for c in lab_chunks],
        "classes": classes, "tau": tau, "lam": lam, "halo": halo, "halo_init": halo_init,
        "means": means_in.tolist(), "center": center.tolist(), "scale": scale,
        "iterations": len(changed_hist), "stop": stop, "changed": changed_hist,
        "blocks_recomputed": blocks_hist, "blocks": int(np.prod(grid)),
        "seconds": {"stats": t_stats - t_start, "means": t_means - t_stats,
                    "iterate": t_iter - t_means, "write": t_end - t_iter,
                    "total": t_end - t_start},
        "peak_rss_mb": peak_rss_mb(),
    }
    return result, info


def _merge_small_chunks(chunks, nsp: int, depth: int):
    """Merge trailing chunks smaller than ``depth`` into their neighbour (overlap needs it)."""
    out = []
    for ax, cs in enumerate(chunks):
        cs = list(cs)
        if ax < nsp:
            while len(cs) > 1 and min(cs) < depth:
                i = int(np.argmin(cs))
                j = i - 1 if i > 0 else i + 1
                cs[min(i, j)] = cs[i] + cs[j]
                del cs[max(i, j)]
        out.append(tuple(cs))
    return tuple(out)


def _count_changes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.full((1,) * a.ndim, np.count_nonzero(a != b), dtype=np.int64)


def _apply_overlap(func, arrays, depth: int, out_chunks, da):
    """``func(*blocks_with_halo, chunk_location) -> labels`` over blocks, trimmed back.

    Every array has the spatial axes first and one trailing axis in a single chunk (channels,
    or a length-1 axis for labels). ``dask.array.overlap.overlap`` with ``boundary="none"``
    adds ``depth`` neighbouring pixels on the inner sides only, so a border block sees the
    image border itself (the reflecting boundary of the DCT heat step).
    """
    nsp = arrays[0].ndim - 1
    dep = {i: depth for i in range(nsp)}
    dep[nsp] = 0
    padded = [da.overlap.overlap(a, depth=dep, boundary="none") for a in arrays]

    def wrapper(*blocks, block_info=None):
        info = block_info[0]
        loc = tuple(info["chunk-location"][:nsp])
        nb = info["num-chunks"][:nsp]
        res = func(*blocks, loc)
        sl = tuple(slice(depth if loc[ax] > 0 else 0,
                         res.shape[ax] - (depth if loc[ax] < nb[ax] - 1 else 0))
                   for ax in range(nsp))
        return np.ascontiguousarray(res[sl])

    return da.map_blocks(wrapper, *padded, dtype=np.uint8, chunks=out_chunks, drop_axis=[nsp])


def _write_tiled_tiff(labels, path: Path, sched: dict[str, Any], tile: int = 512) -> None:
    """Write a 2D/3D dask label array as a tiled zlib TIFF, one strip of tiles at a time."""
    import tifffile

    if labels.ndim != 2:
        raise ValueError("tiled TIFF output supports 2D labels; write 3D labels to .zarr.")
    rows, cols = labels.shape
    t = min(tile, 16 * ((min(rows, cols) + 15) // 16))

    def tiles():
        for r0 in range(0, rows, t):
            strip = np.asarray(labels[r0:r0 + t].compute(**sched))
            if strip.shape[0] < t:
                strip = np.pad(strip, ((0, t - strip.shape[0]), (0, 0)))
            for c0 in range(0, cols, t):
                block = strip[:, c0:c0 + t]
                if block.shape[1] < t:
                    block = np.pad(block, ((0, 0), (0, t - block.shape[1])))
                yield block

    tmp = path.with_name(f".{path.name}.physeg-tmp")
    tifffile.imwrite(tmp, tiles(), shape=(rows, cols), dtype=np.uint8, tile=(t, t),
                     compression="zlib", photometric="minisblack", metadata=None)
    os.replace(tmp, path)
