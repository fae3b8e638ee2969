"""Benchmark reports: run methods over annotated folders, write JSON, Markdown and one HTML page.

``physeg bench DATASET_DIR... --methods otsu,heat,chan-vese -o REPORT_DIR`` calls
:func:`run_bench`; ``physeg evaluate PRED GT --report DIR`` calls :func:`evaluation_report`;
``physeg segment --overlay`` writes its overlays with :func:`write_overlay`. All three share one
data model (a JSON-able dict) and one renderer (:func:`render`), which writes

* ``report.json``: everything (per-image records, summaries, versions, parameters);
* ``report.md``: the same tables and galleries in Markdown (image links);
* ``index.html``: one static page (inline CSS, relative ``img/`` links, no network), built from
  the same dict: metric tables per dataset with the anchors side by side, per-image galleries
  (image, truth, prediction, overlay) sorted worst first, timing and memory, versions and
  parameters.

Choices made where the issue left room
--------------------------------------
* **Label matching.** Unsupervised methods do not know which of their phases is "the object"
  (``heat`` and ``otsu`` call the *brighter* phase 1; a PH2 lesion is darker than the skin).
  Every prediction, anchors included, is therefore mapped to the truth's labels by the
  Hungarian assignment that maximises overlap (:func:`physeg.metrics.hungarian_match`) before
  scoring; unmatched predicted labels become background. The same rule for every method keeps
  the comparison fair; the raw labels are kept under ``labels/``.
* **Metrics.** Binary truths (labels {0, 1}) are scored foreground-vs-foreground
  (``average="binary"``), others by the mean over labels; with several annotators (BSDS500) a
  metric is averaged over them. Means ignore NaN (e.g. HD95 of an empty prediction) and the
  count of such images is shown. The primary metric (first in ``metrics``, Dice by default)
  orders the galleries, worst first.
* **Anchors.** The classical baselines (``otsu``, ``chan-vese``) are marked as anchors and
  are always listed first in each table, so a method's row sits beside them. They are not
  added automatically: the user chooses the methods.
* **Timing and memory.** Seconds are wall time of the ``physeg.segment`` call alone (no I/O).
  Memory is the peak of Python-tracked allocations during that call (``tracemalloc``; numpy
  arrays are tracked, allocations inside C/C++/Fortran libraries such as FFT workspaces are
  not), so it is a lower bound, comparable between methods.
* **Galleries** keep the ``gallery`` worst images per (dataset, method) (default 8), as
  thumbnails at most 160 px on a side; the page stays light for datasets of any size.
* **Work units.** One (dataset, image, method) is a pure function (:func:`bench_one`), run
  serially or on any :class:`concurrent.futures.Executor`, like :mod:`physeg.batch`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import json
import math
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "ANCHORS",
    "DEFAULT_METRICS",
    "write_overlay",
    "BenchTask",
    "bench_one",
    "run_bench",
    "evaluation_report",
    "render",
]

ANCHORS = ("otsu", "chan-vese")
DEFAULT_METRICS = ("dice", "iou", "boundary_f1", "hausdorff95")
THUMB = 160


# --------------------------------------------------------------------------- pictures


def _png_bytes(rgb: np.ndarray) -> bytes:
    import io as _io

    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    from ..batch import _atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, _png_bytes(rgb))
    return path


def _middle_plane(arr: np.ndarray, spatial_ndim: int) -> np.ndarray:
    return arr[arr.shape[0] // 2] if spatial_ndim == 3 else arr


def write_overlay(path: str | os.PathLike, image: Any, labels: Any, *, alpha: float = 0.35,
                  max_side: int | None = None) -> Path:
    """Write ``image`` with ``labels`` overlaid (:func:`physeg.overlay.overlay`) as an RGB PNG.

    Parameters
    ----------
    path : path
        Output ``.png`` (written atomically; parent folders created).
    image : array_like
        Grey (rows, cols), colour (rows, cols, 3|4) or a volume (its middle plane is shown).
    labels : array_like of int
        Same spatial shape; 0 = background (not tinted).
    alpha : float, default 0.35
        Tint opacity in [0, 1].
    max_side : int, optional
        Downsample (nearest neighbour, labels stay crisp) so the longer side is at most this.
    """
    from ..overlay import overlay

    rgb = overlay(image, labels, alpha=alpha)
    if max_side is not None:
        rgb = _shrink(rgb, max_side)
    return _write_png(path, rgb)


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    step = int(math.ceil(max(rgb.shape[:2]) / max_side))
    return rgb if step <= 1 else np.ascontiguousarray(rgb[::step, ::step])


def _label_rgb(labels: np.ndarray) -> np.ndarray:
    """Labels in palette colours on black (0 = background)."""
    from ..overlay import PALETTE

    lab = np.asarray(labels)
    out = np.zeros(lab.shape + (3,), np.uint8)
    fg = lab > 0
    out[fg] = PALETTE[(lab[fg].astype(np.int64) - 1) % len(PALETTE)]
    return out


def _error_rgb(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Agreement map: correct foreground white, false positives red, false negatives blue."""
    out = np.zeros(gt.shape + (3,), np.uint8)
    out[(pred == gt) & (gt > 0)] = (235, 235, 235)
    out[(pred != gt) & (pred > 0)] = (214, 39, 40)
    out[(pred != gt) & (pred == 0)] = (31, 119, 180)
    return out


def _image_rgb(image: np.ndarray, cax: int | None) -> np.ndarray:
    from ..overlay import _display_rgb

    img = image if cax is None else np.moveaxis(image, cax, -1)
    return np.round(_display_rgb(img) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- one work unit


@dataclasses.dataclass(frozen=True)
class BenchTask:
    """One (dataset, image, method) to segment and score (picklable)."""

    dataset: str
    sample_id: str
    image_path: str
    mask_paths: tuple[str, ...]
    method: str
    params: dict[str, Any]
    metrics: tuple[str, ...]
    label_path: str
    seed: int | None = 0


def _match(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    from ..metrics import hungarian_match

    mapping = hungarian_match(pred, gt)
    lut_keys = np.array(sorted(mapping), dtype=np.int64)
    out = np.zeros(pred.shape, dtype=np.int64)
    if lut_keys.size:
        vals = np.array([mapping[k] for k in lut_keys], dtype=np.int64)
        idx = np.searchsorted(lut_keys, pred)
        idx = np.clip(idx, 0, lut_keys.size - 1)
        hit = lut_keys[idx] == pred
        out[hit] = vals[idx[hit]]
    return out


def _score(pred: np.ndarray, gts: list[np.ndarray], metrics: Sequence[str]) -> dict[str, float]:
    from ..metrics import evaluate

    per = []
    for gt in gts:
        matched = _match(pred, gt)
        binary = int(gt.max()) <= 1
        vals = evaluate(matched, gt, list(metrics), average="binary" if binary else "mean")
        per.append([float(vals[m]) for m in vals])
    arr = np.asarray(per, dtype=float)
    names = list(evaluate(gts[0], gts[0], list(metrics)).keys())
    with np.errstate(invalid="ignore"):
        means = [float(np.nanmean(arr[:, j])) if np.isfinite(arr[:, j]).any() else float("nan")
                 for j in range(arr.shape[1])]
    return dict(zip(names, means, strict=True))


_WARMED: set[str] = set()


def _warm_up(method: str, supports_colour: bool) -> None:
    """One untimed call per process and method, so lazy imports are not timed."""
    from ..api import segment

    if method in _WARMED:
        return
    _WARMED.add(method)
    img = np.zeros((24, 24, 3) if supports_colour else (24, 24), np.float32)
    img[6:18, 6:18] = 1.0
    img += np.random.default_rng(0).normal(0, 0.05, img.shape).astype(np.float32)
    try:
        segment(img, method=method, channel_axis=-1 if supports_colour else None, rng=0)
    except Exception:  # noqa: BLE001 - a warm-up failure shows up in the timed call
        pass


def bench_one(task: BenchTask) -> dict[str, Any]:
    """Segment one image with one method, save its labels, score them; never raises.

    Returns a record: dataset, id, method, status ("done"/"failed"), error, seconds (the
    segment call, after one untimed warm-up call per process and method, so lazy imports are
    not timed), peak_mb (tracemalloc peak during the call), metrics, shape.
    """
    from ..api import get_method, segment
    from ..batch import prepare_image, write_labels
    from ..data.datasets import Sample

    rec: dict[str, Any] = {"dataset": task.dataset, "id": task.sample_id, "method": task.method,
                           "image": task.image_path, "labels": task.label_path,
                           "status": "failed", "error": None, "seconds": None, "peak_mb": None,
                           "metrics": {}}
    try:
        sample = Sample(task.sample_id, Path(task.image_path),
                        tuple(Path(p) for p in task.mask_paths))
        image, gts = sample.load()
        m = get_method(task.method)
        arr, cax = prepare_image(image, m.supports_multichannel, "auto")
        rec["shape"] = list(image.shape)
        _warm_up(m.name, cax is not None)
        tracemalloc.start()
        try:
            t = time.perf_counter()
            pred = np.asarray(segment(arr, method=m.name, channel_axis=cax, rng=task.seed,
                                      **task.params))
            rec["seconds"] = time.perf_counter() - t
            rec["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
        write_labels(task.label_path, pred, {"method": m.name, "params": task.params,
                                             "input": task.image_path})
        rec["metrics"] = _score(pred, gts, task.metrics)
        rec["status"] = "done"
    except Exception as exc:  # noqa: BLE001 - one bad image is reported, never fatal
        rec["error"] = f"{type(exc).__name__}: {exc}"
    return rec


# --------------------------------------------------------------------------- summaries


def _versions() -> dict[str, str]:
    from ..batch import versions

    return versions()


def _stats(values: list[float]) -> dict[str, float | int]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    fin = v[np.isfinite(v)]
    if fin.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"),
                "n": 0, "undefined": int(v.size)}
    return {"mean": float(fin.mean()), "std": float(fin.std()), "median": float(np.median(fin)),
            "n": int(fin.size), "undefined": int(v.size - fin.size)}


def _summarise(records: list[dict[str, Any]], metrics: list[str], anchors: Sequence[str]
               ) -> list[dict[str, Any]]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    order = sorted(by_method, key=lambda m: (m not in anchors, list(by_method).index(m)))
    rows = []
    for meth in order:
        rs = by_method[meth]
        done = [r for r in rs if r["status"] == "done"]
        secs = [r["seconds"] for r in done if r.get("seconds") is not None]
        mems = [r["peak_mb"] for r in done if r.get("peak_mb") is not None]
        rows.append({
            "method": meth,
            "anchor": meth in anchors,
            "n": len(rs),
            "failed": len(rs) - len(done),
            "metrics": {m: _stats([r["metrics"].get(m) for r in done]) for m in metrics},
            "seconds": {"median": float(np.median(secs)) if secs else float("nan"),
                        "total": float(np.sum(secs)) if secs else 0.0,
                        "max": float(np.max(secs)) if secs else float("nan")},
            "peak_mb": {"median": float(np.median(mems)) if mems else float("nan"),
                        "max": float(np.max(mems)) if mems else float("nan")},
        })
    return rows


def _lower_is_better(metric: str) -> bool:
    return metric in ("hausdorff", "hausdorff95", "average_surface_distance")


def _sort_key(primary: str):
    sign = -1.0 if _lower_is_better(primary) else 1.0

    def key(r: dict[str, Any]) -> float:
        v = r["metrics"].get(primary) if r["status"] == "done" else None
        if v is None or not np.isfinite(v):
            return -math.inf  # failed or undefined first: they are the worst
        return sign * v

    return key


# --------------------------------------------------------------------------- bench


def run_bench(
    datasets: Sequence[str | os.PathLike],
    methods: Sequence[str],
    outdir: str | os.PathLike,
    *,
    params: dict[str, dict[str, Any]] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    limit: int | None = None,
    gallery: int = 8,
    executor: Any = None,
    rng: int | None = 0,
    anchors: Sequence[str] = ANCHORS,
    progress: Callable[[dict[str, Any]], None] | None = None,
    title: str = "physeg benchmark",
) -> dict[str, Any]:
    """Run ``methods`` over annotated folders and write the report to ``outdir``.

    Parameters
    ----------
    datasets : sequence of paths
        Annotated folders (:class:`physeg.data.datasets.FolderDataset`: ``manifest.csv`` layout or
        ``images/`` + ``masks/``).
    methods : sequence of str
        Registered methods (training-free ones; a method that needs a model is an error).
    outdir : path
        Report folder (created): ``index.html``, ``report.md``, ``report.json``, ``img/``
        thumbnails and ``labels/<dataset>/<method>/<id>.png`` predictions.
    params : dict, optional
        ``{method: {param: value}}`` overrides of the registered defaults.
    metrics : sequence of str
        Metric names (:data:`physeg.metrics.METRICS`); the first orders the galleries.
    limit : int, optional
        Use only the first ``limit`` images of each dataset (quick runs).
    gallery : int, default 8
        Worst images shown per (dataset, method); 0 shows none.
    executor : concurrent.futures.Executor, distributed.Client or None
        Where :func:`bench_one` runs (None: serially here).
    rng : int or None, default 0
        Seed passed to every method call.
    anchors : sequence of str
        Methods marked as anchors (listed first).
    progress : callable, optional
        Called with each record as it arrives.

    Returns
    -------
    dict
        The report (as written to ``report.json``).
    """
    from ..api import get_method
    from ..batch import _as_executor
    from ..data.datasets import FolderDataset
    from ..metrics import resolve_metric

    if not datasets:
        raise ValueError("no dataset folder given; pass at least one annotated folder.")
    if not methods:
        raise ValueError("no method given; e.g. methods=['otsu', 'heat'].")
    metrics = list(dict.fromkeys(resolve_metric(m) for m in metrics))
    params = {get_method(k).name: dict(v) for k, v in (params or {}).items()}
    meths = []
    for name in methods:
        m = get_method(name)
        if m.func is None:
            raise ValueError(f"method {m.name!r} needs a fitted model and cannot be benchmarked "
                             "training-free; leave it out.")
        meths.append(m)
    for k in params:
        if k not in [m.name for m in meths]:
            raise ValueError(f"parameters given for {k!r}, which is not among the methods "
                             f"{[m.name for m in meths]}.")
    resolved_params = {m.name: {**m.defaults(), **m.validate(params.get(m.name, {}))}
                       for m in meths}
    dsets = [FolderDataset(d, limit=limit) for d in datasets]
    names = [d.name for d in dsets]
    if len(set(names)) != len(names):
        raise ValueError(f"dataset folder names must differ (they name the report sections); "
                         f"got {names}.")
    ex = _as_executor(executor)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tasks = []
    for d in dsets:
        for s in d:
            if not s.mask_paths:
                continue
            for m in meths:
                tasks.append(BenchTask(
                    dataset=d.name, sample_id=s.id, image_path=str(s.image_path),
                    mask_paths=tuple(str(p) for p in s.mask_paths), method=m.name,
                    params=params.get(m.name, {}), metrics=tuple(metrics),
                    label_path=str(outdir / "labels" / d.name / m.name / f"{s.id}.png"),
                    seed=rng))
    t0 = time.perf_counter()
    records: list[dict[str, Any] | None] = [None] * len(tasks)
    if ex is None:
        for i, t in enumerate(tasks):
            records[i] = bench_one(t)
            if progress:
                progress(records[i])
    else:
        import concurrent.futures as cf

        futs = {ex.submit(bench_one, t): i for i, t in enumerate(tasks)}
        for fut in cf.as_completed(futs):
            i = futs[fut]
            try:
                records[i] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died
                t = tasks[i]
                records[i] = {"dataset": t.dataset, "id": t.sample_id, "method": t.method,
                              "image": t.image_path, "status": "failed", "metrics": {},
                              "error": f"{type(exc).__name__}: {exc}", "seconds": None,
                              "peak_mb": None}
            if progress:
                progress(records[i])
    wall = time.perf_counter() - t0
    recs = [r for r in records if r is not None]
    report = {
        "kind": "bench",
        "title": title,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "executor": type(ex).__name__ if ex is not None else "serial"},
        "wall_seconds": wall,
        "metrics": metrics,
        "primary": metrics[0],
        "anchors": list(anchors),
        "params": resolved_params,
        "seed": rng,
        "datasets": [],
        "records": recs,
    }
    for d in dsets:
        rs = [r for r in recs if r["dataset"] == d.name]
        entry = {"name": d.name, "path": str(d.root), "n_images": len(d),
                 "table": _summarise(rs, metrics, anchors), "gallery": []}
        entry["gallery"] = _bench_gallery(d, rs, [m.name for m in meths], metrics[0], gallery,
                                          outdir)
        report["datasets"].append(entry)
    render(report, outdir)
    return report


def _bench_gallery(dataset, records, methods, primary, n, outdir: Path) -> list[dict[str, Any]]:
    """Thumbnails (image, truth, prediction, overlay) of the worst ``n`` images per method."""
    from ..batch import prepare_image
    from ..io import read_mask

    if n <= 0:
        return []
    out = []
    done_pictures: set[str] = set()
    key = _sort_key(primary)
    for meth in methods:
        rs = sorted((r for r in records if r["method"] == meth), key=key)[:n]
        items = []
        for r in rs:
            sample = dataset[r["id"]]
            base = f"img/{dataset.name}/{_safe(r['id'])}"
            panels = []
            try:
                image = sample.image()
                _, cax = prepare_image(image, True, "auto")
                gt = read_mask(sample.mask_paths[0])
            except Exception:  # noqa: BLE001 - unreadable pair: listed with its error only
                items.append({"id": r["id"], "status": r["status"], "error": r.get("error"),
                              "score": r["metrics"].get(primary), "panels": []})
                continue
            spatial = gt.ndim
            if base not in done_pictures:
                _write_png(outdir / f"{base}_image.png",
                           _shrink(_middle_plane(_image_rgb(image, cax), spatial), THUMB))
                _write_png(outdir / f"{base}_truth.png",
                           _shrink(_label_rgb(_middle_plane(gt, spatial)), THUMB))
                done_pictures.add(base)
            panels += [{"caption": "image", "src": f"{base}_image.png"},
                       {"caption": "truth", "src": f"{base}_truth.png"}]
            if r["status"] == "done":
                pred = _match(read_mask(r["labels"]), gt)
                mb = f"{base}_{_safe(meth)}"
                _write_png(outdir / f"{mb}_pred.png",
                           _shrink(_label_rgb(_middle_plane(pred, spatial)), THUMB))
                shown = image if cax is None else np.moveaxis(image, cax, -1)
                write_overlay(outdir / f"{mb}_overlay.png", _middle_plane(shown, spatial),
                              _middle_plane(pred, spatial), max_side=THUMB)
                panels += [{"caption": "prediction", "src": f"{mb}_pred.png"},
                           {"caption": "overlay", "src": f"{mb}_overlay.png"}]
            items.append({"id": r["id"], "status": r["status"], "error": r.get("error"),
                          "score": r["metrics"].get(primary), "panels": panels})
        out.append({"method": meth, "items": items})
    return out


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


# --------------------------------------------------------------------------- evaluate


def evaluation_report(
    rows: list[dict[str, Any]],
    outdir: str | os.PathLike,
    *,
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    metrics: Sequence[str],
    gallery: int = 12,
    failed: int = 0,
) -> dict[str, Any]:
    """Report for ``physeg evaluate --report``: the score table and worst-first gallery.

    ``rows`` are the evaluate command's per-image rows (``id``, ``pred``, ``gt`` paths and one
    value per metric). The gallery shows truth, prediction and an agreement map (correct
    foreground white, false positives red, false negatives blue); there is no image panel, as
    evaluate sees only label files.
    """
    from ..io import read_mask

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    metrics = list(metrics)
    name = Path(pred_dir).name or "predictions"
    recs = [{"dataset": "evaluation", "id": r["id"], "method": name, "status": "done",
             "metrics": {m: r[m] for m in metrics}, "seconds": None, "peak_mb": None}
            for r in rows]
    table = _summarise(recs, metrics, ())
    for row in table:
        row["failed"] = failed
    items = []
    key = _sort_key(metrics[0])
    by_id = {r["id"]: r for r in rows}
    for rec in sorted(recs, key=key)[:gallery]:
        r = by_id[rec["id"]]
        pred, gt = read_mask(r["pred"]), read_mask(r["gt"][0])
        spatial = gt.ndim
        base = f"img/{_safe(rec['id'])}"
        _write_png(outdir / f"{base}_truth.png",
                   _shrink(_label_rgb(_middle_plane(gt, spatial)), THUMB))
        _write_png(outdir / f"{base}_pred.png",
                   _shrink(_label_rgb(_middle_plane(pred, spatial)), THUMB))
        _write_png(outdir / f"{base}_errors.png",
                   _shrink(_error_rgb(_middle_plane(pred, spatial) > 0 if int(gt.max()) <= 1
                                      else _middle_plane(pred, spatial),
                                      _middle_plane(gt, spatial)), THUMB))
        items.append({"id": rec["id"], "status": "done", "error": None,
                      "score": rec["metrics"][metrics[0]],
                      "panels": [{"caption": "truth", "src": f"{base}_truth.png"},
                                 {"caption": "prediction", "src": f"{base}_pred.png"},
                                 {"caption": "errors", "src": f"{base}_errors.png"}]})
    report = {
        "kind": "evaluate",
        "title": f"physeg evaluate: {pred_dir} vs {gt_dir}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "metrics": metrics,
        "primary": metrics[0],
        "anchors": [],
        "params": {},
        "datasets": [{"name": "evaluation", "path": f"{pred_dir} vs {gt_dir}",
                      "n_images": len(rows), "table": table,
                      "gallery": [{"method": name, "items": items}]}],
        "records": recs,
    }
    render(report, outdir)
    return report


# --------------------------------------------------------------------------- rendering


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _best(table: list[dict[str, Any]], metric: str) -> set[str]:
    """Methods with the best mean (ties all count)."""
    vals = {r["method"]: r["metrics"][metric]["mean"] for r in table
            if np.isfinite(r["metrics"][metric]["mean"])}
    if not vals:
        return set()
    top = (min if _lower_is_better(metric) else max)(vals.values())
    return {k for k, v in vals.items() if v == top}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _table_rows(ds: dict[str, Any], metrics: list[str]):
    """(header, rows, bold) for one dataset's metric table, shared by Markdown and HTML."""
    header = (["method", "images", "failed"] + [f"{m} ±sd" for m in metrics]
              + ["s/image (median)", "total s", "peak MB med/max"])
    best = {m: _best(ds["table"], m) for m in metrics}
    rows, bold = [], []
    for r in ds["table"]:
        cells = [r["method"] + (" (anchor)" if r["anchor"] else ""), str(r["n"]),
                 str(r["failed"])]
        flags = [False, False, False]
        for m in metrics:
            st = r["metrics"][m]
            d = 1 if _lower_is_better(m) else 3
            txt = f"{_fmt(st['mean'], d)} ± {_fmt(st['std'], d)}"
            if st.get("undefined"):
                txt += f" ({st['undefined']} undef.)"
            cells.append(txt)
            flags.append(r["method"] in best[m])
        cells += [_fmt(r["seconds"]["median"], 3), _fmt(r["seconds"]["total"], 1),
                  f"{_fmt(r['peak_mb']['median'], 1)} / {_fmt(r['peak_mb']['max'], 1)}"]
        flags += [False, False, False]
        rows.append(cells)
        bold.append(flags)
    return header, rows, bold


def _markdown(rep: dict[str, Any]) -> str:
    metrics = rep["metrics"]
    lines = [f"# {rep['title']}", "",
             f"Created {rep['created']} · command `{rep['command']}` · "
             f"{rep['machine'].get('cpus')} CPUs · {rep['machine'].get('executor', '')}", ""]
    if rep["kind"] == "bench":
        lines += ["Predictions are matched to the truth's labels (Hungarian, max overlap) "
                  "before scoring; anchors are the classical baselines. Best mean per metric "
                  "in bold.", ""]
    for ds in rep["datasets"]:
        lines += [f"## {ds['name']}", "", f"`{ds['path']}` · {ds['n_images']} images", ""]
        header, rows, bold = _table_rows(ds, metrics)
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for cells, flags in zip(rows, bold, strict=True):
            lines.append("| " + " | ".join(f"**{c}**" if f else c
                                           for c, f in zip(cells, flags, strict=True)) + " |")
        lines.append("")
        for g in ds["gallery"]:
            if not g["items"]:
                continue
            lines += [f"### {ds['name']} · {g['method']}: worst {len(g['items'])} by "
                      f"{rep['primary']}", ""]
            for it in g["items"]:
                pics = " ".join(f"![{p['caption']}]({p['src']})" for p in it["panels"])
                err = f" — failed: {it['error']}" if it["status"] != "done" else ""
                lines.append(f"- `{it['id']}` {rep['primary']}={_fmt(it['score'])}{err}  ")
                lines.append(f"  {pics}")
            lines.append("")
    lines += ["## Run", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rep["versions"].items()]
    if rep.get("params"):
        lines += ["", "| method | parameters |", "|---|---|"]
        for k, v in rep["params"].items():
            lines.append(f"| {k} | {', '.join(f'{a}={b}' for a, b in v.items()) or '—'} |")
    if rep.get("seed") is not None:
        lines += ["", f"Seed: {rep['seed']}."]
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1600px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px}.meta{color:#666;font-size:12px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;
text-align:right;white-space:nowrap}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
tr.anchor td{background:#fafaf0}td.best{font-weight:700;background:#e8f4e8}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:4px;padding:6px;background:#fff}
.card .id{font-size:12px;margin-bottom:4px}.card .bad{color:#b00}
.panels{display:flex;gap:4px}.panel{text-align:center;font-size:11px;color:#555}
.panel img{display:block;max-width:160px;max-height:160px;image-rendering:pixelated;
border:1px solid #eee}
#render-check{color:#999;font-size:11px}
"""

_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0, bad = [];
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
    else { bad.push(imgs[i].getAttribute('src')); }
  }
  var el = document.getElementById('render-check');
  el.setAttribute('data-images-ok', String(ok));
  el.setAttribute('data-images-broken', String(bad.length));
  el.setAttribute('data-tables', String(document.querySelectorAll('table').length));
  el.textContent = 'page check: ' + ok + ' images loaded, ' + bad.length + ' broken'
    + (bad.length ? ' (' + bad.slice(0, 5).join(', ') + ')' : '');
});
"""


def _html(rep: dict[str, Any]) -> str:
    e = html.escape
    metrics = rep["metrics"]
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>{e(rep['title'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>{e(rep['title'])}</h1>",
           f"<div class='meta'>created {e(rep['created'])} · <code>{e(rep['command'])}</code>"
           f" · {rep['machine'].get('cpus')} CPUs · {e(str(rep['machine'].get('executor', '')))}"
           "</div>"]
    if rep["kind"] == "bench":
        out.append("<p class='meta'>Predictions are matched to the truth's labels (Hungarian, "
                   "max overlap) before scoring. Anchors (classical baselines) are listed "
                   "first; the best mean per metric is highlighted. Time is the segment call "
                   "alone; memory is the tracemalloc peak of that call (a lower bound).</p>")
    out.append("<h2 id='results'>Results</h2>")
    for ds in rep["datasets"]:
        header, rows, bold = _table_rows(ds, metrics)
        out.append(f"<h3>{e(ds['name'])} <span class='meta'>{e(ds['path'])} · "
                   f"{ds['n_images']} images</span></h3>")
        out.append(f"<table class='metrics' data-dataset='{e(ds['name'])}'><thead><tr>"
                   + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
        for r, cells, flags in zip(ds["table"], rows, bold, strict=True):
            cls = " class='anchor'" if r["anchor"] else ""
            out.append(f"<tr{cls}>" + "".join(
                f"<td class='best'>{e(c)}</td>" if f else f"<td>{e(c)}</td>"
                for c, f in zip(cells, flags, strict=True)) + "</tr>")
        out.append("</tbody></table>")
    out.append("<h2 id='galleries'>Galleries (worst first)</h2>")
    for ds in rep["datasets"]:
        for g in ds["gallery"]:
            if not g["items"]:
                continue
            out.append(f"<h3>{e(ds['name'])} · {e(g['method'])} <span class='meta'>worst "
                       f"{len(g['items'])} by {e(rep['primary'])}</span></h3>")
            out.append("<div class='gallery'>")
            for it in g["items"]:
                status = ("" if it["status"] == "done"
                          else f" <span class='bad'>failed: {e(str(it['error']))}</span>")
                out.append(f"<div class='card'><div class='id'><b>{e(str(it['id']))}</b> "
                           f"{e(rep['primary'])}={_fmt(it['score'])}{status}</div>"
                           "<div class='panels'>")
                for p in it["panels"]:
                    out.append(f"<div class='panel'><img src='{e(p['src'])}' "
                               f"alt='{e(p['caption'])} {e(str(it['id']))}' loading='eager'>"
                               f"{e(p['caption'])}</div>")
                out.append("</div></div>")
            out.append("</div>")
    out.append("<h2 id='run'>Run: versions and parameters</h2>")
    out.append("<table class='versions'><thead><tr><th>package</th><th>version</th></tr>"
               "</thead><tbody>" + "".join(f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>"
                                           for k, v in rep["versions"].items())
               + "</tbody></table>")
    if rep.get("params"):
        out.append("<table class='params'><thead><tr><th>method</th><th>parameters</th></tr>"
                   "</thead><tbody>")
        for k, v in rep["params"].items():
            txt = ", ".join(f"{a}={b}" for a, b in v.items()) or "—"
            out.append(f"<tr><td>{e(k)}</td><td style='text-align:left'>{e(txt)}</td></tr>")
        out.append("</tbody></table>")
    if rep.get("seed") is not None:
        out.append(f"<p class='meta'>seed {rep['seed']}; wall time "
                   f"{_fmt(rep.get('wall_seconds'), 1)} s</p>")
    out.append("<p id='render-check'>page check pending</p>")
    out.append(f"<script>{_CHECK_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def render(report: dict[str, Any], outdir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``index.html`` for a report dict.

    The Markdown and the HTML are both rendered from this one dict (the JSON's content), so
    the three files always agree.
    """
    from ..batch import _atomic_write

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rep = _jsonable(report)
    paths = {"json": outdir / "report.json", "md": outdir / "report.md",
             "html": outdir / "index.html"}
    _atomic_write(paths["json"], json.dumps(rep, indent=1, allow_nan=False).encode())
    view = json.loads(json.dumps(rep), parse_constant=None)
    _restore_nan(view)
    _atomic_write(paths["md"], _markdown(view).encode())
    _atomic_write(paths["html"], _html(view).encode())
    return paths


def _restore_nan(obj: Any) -> None:
    """JSON nulls in statistic slots back to NaN, so the renderers print '–'."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if v is None and k in ("mean", "std", "median", "max", "total", "score"):
                obj[k] = float("nan")
            else:
                _restore_nan(v)
    elif isinstance(obj, list):
        for v in obj:
            _restore_nan(v)
