"""Benchmark reports: run methods over annotated folders, write JSON, Markdown and one HTML page.

``physeg bench DATASET_DIR... --methods otsu,heat,chan-vese -o REPORT_DIR`` calls
:func:`run_bench`; ``physeg evaluate PRED GT --report DIR`` calls :func:`evaluation_report`;
both build one data model (a JSON-able dict) for one renderer
(:func:`physeg.report._render.render`), which writes

* ``report.json``: everything (per-image records, summaries, versions, parameters);
* ``report.md``: the same tables and galleries in Markdown (image links);
* ``index.html``: one static page (inline CSS, relative ``img/`` links, no network), built from
  the same dict: metric tables per dataset with the anchors side by side, per-image galleries
  (image, truth, prediction, overlay) sorted worst first, timing and memory, versions and
  parameters.

Choices made where the issue left room
--------------------------------------
* **One scoring rule** (:func:`physeg.metrics.score_labels`, the same function as
  ``physeg evaluate``, so both give the same numbers for the same label files). By default
  labels are scored as they are: a binary truth as *label 1 vs mask > 0* (what the user
  gets from ``physeg segment``), a multi-label truth label by label. ``match=True``
  (``--match``) first maps every prediction, anchors included, to the truth's labels by
  the Hungarian assignment that maximises overlap (unmatched labels become background),
  for unsupervised methods whose label ids mean nothing. The rule used is stated in the
  report (``scoring``) and on the command line; the raw labels are kept under ``labels/``.
  With the plain rule on binary truths each record also keeps the Dice of the inverted
  prediction (``inverted_dice``), so a method that called the wrong phase the object can
  be pointed out. With several annotators (BSDS500) a metric is averaged over them. Means
  ignore NaN (e.g. HD95 of an empty prediction) and the count of such images is shown. The
  primary metric (first in ``metrics``, Dice by default) orders the galleries, worst first.
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
  serially or on any :class:`concurrent.futures.Executor` by :func:`physeg._runner.run_tasks`,
  like :mod:`physeg.batch`. Parameters are validated once, by the schema, in :func:`run_bench`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import io as pio
from .._runner import as_executor, run_tasks, versions
from .._validate import channels_last, prepare_colour
from ..api import get_method, run_validated, segment
from ..overlay import shrink, write_overlay
from ._render import (
    error_rgb,
    image_rgb,
    label_rgb,
    lower_is_better,
    middle_plane,
    render,
    write_png,
)

__all__ = [
    "ANCHORS",
    "DEFAULT_METRICS",
    "BenchTask",
    "bench_one",
    "run_bench",
    "evaluation_report",
    "render",
]

ANCHORS = ("otsu", "chan-vese")
DEFAULT_METRICS = ("dice", "iou", "boundary_f1", "hausdorff95")
THUMB = 160


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
    match: bool = False


def _score(pred: np.ndarray, gts: list[np.ndarray], metrics: Sequence[str],
           match: bool) -> dict[str, Any]:
    from ..metrics import score_labels

    return score_labels(pred, gts, list(metrics), match=match)


_WARMED: set[str] = set()


def _warm_up(method: str, supports_colour: bool) -> None:
    """One untimed call per process and method, so lazy imports are not timed."""
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
    not timed), peak_mb (tracemalloc peak during the call), metrics (by
    :func:`physeg.metrics.score_labels`), inverted_dice, shape.
    """
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
        arr, cax = prepare_colour(image, m.supports_multichannel, "auto")
        rec["shape"] = list(image.shape)
        _warm_up(m.name, cax is not None)
        tracemalloc.start()
        try:
            t = time.perf_counter()
            # task.params were validated once, when the bench was planned
            pred = np.asarray(run_validated(m, arr, channel_axis=cax, rng=task.seed,
                                            params=task.params))
            rec["seconds"] = time.perf_counter() - t
            rec["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
        pio.write_labels(task.label_path, pred, overwrite=True, protect=(task.image_path,),
                         provenance={"method": m.name, "params": task.params,
                                     "input": task.image_path})
        scored = _score(pred, gts, task.metrics, task.match)
        rec["metrics"] = scored["scores"]
        rec["inverted_dice"], rec["object_dice"] = scored["inverted_dice"], scored["object_dice"]
        rec["binary_truth"] = scored["binary"]
        rec["status"] = "done"
    except Exception as exc:  # noqa: BLE001 - one bad image is reported, never fatal
        rec["error"] = f"{type(exc).__name__}: {exc}"
    return rec


# --------------------------------------------------------------------------- summaries


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
            # plain rule on binary truths: mean Dice of the object mask and of its inverse
            "object_dice": _stats([r.get("object_dice") for r in done])["mean"],
            "inverted_dice": _stats([r.get("inverted_dice") for r in done])["mean"],
            "seconds": {"median": float(np.median(secs)) if secs else float("nan"),
                        "total": float(np.sum(secs)) if secs else 0.0,
                        "max": float(np.max(secs)) if secs else float("nan")},
            "peak_mb": {"median": float(np.median(mems)) if mems else float("nan"),
                        "max": float(np.max(mems)) if mems else float("nan")},
        })
    return rows


def _sort_key(primary: str):
    sign = -1.0 if lower_is_better(primary) else 1.0

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
    match: bool = False,
    on_start: Callable[[int], None] | None = None,
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
    on_start : callable, optional
        Called once with the number of (image, method) runs before the first, so that a
        progress bar shows its total.
    match : bool, default False
        Score Hungarian-matched labels instead of the labels as they are (module notes;
        :func:`physeg.metrics.score_labels`).

    Returns
    -------
    dict
        The report (as written to ``report.json``).
    """
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
        m.check_segments_without_model()
        meths.append(m)
    for k in params:
        if k not in [m.name for m in meths]:
            raise ValueError(f"parameters given for {k!r}, which is not among the methods "
                             f"{[m.name for m in meths]}.")
    # The one validation: every task gets the schema-converted values.
    given = {m.name: m.validate(params.get(m.name, {})) for m in meths}
    resolved_params = {m.name: {**m.defaults(), **given[m.name]} for m in meths}
    dsets = [FolderDataset(d, limit=limit) for d in datasets]
    names = [d.name for d in dsets]
    if len(set(names)) != len(names):
        raise ValueError(f"dataset folder names must differ (they name the report sections); "
                         f"got {names}.")
    ex = as_executor(executor)
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
                    params=given[m.name], metrics=tuple(metrics),
                    label_path=str(outdir / "labels" / d.name / m.name / f"{s.id}.png"),
                    seed=rng, match=bool(match)))
    if on_start is not None:
        on_start(len(tasks))
    t0 = time.perf_counter()
    records: list[dict[str, Any] | None] = [None] * len(tasks)

    def accept(i: int, rec: dict[str, Any]) -> None:
        records[i] = rec
        if progress:
            progress(rec)

    def crashed(t: BenchTask, exc: BaseException) -> dict[str, Any]:
        return {"dataset": t.dataset, "id": t.sample_id, "method": t.method,
                "image": t.image_path, "status": "failed", "metrics": {},
                "error": f"{type(exc).__name__}: {exc}", "seconds": None, "peak_mb": None}

    run_tasks(bench_one, list(enumerate(tasks)), ex, accept, crashed)
    wall = time.perf_counter() - t0
    recs = [r for r in records if r is not None]
    report = {
        "kind": "bench",
        "title": title,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "versions": versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "executor": type(ex).__name__ if ex is not None else "serial"},
        "wall_seconds": wall,
        "metrics": metrics,
        "primary": metrics[0],
        "anchors": list(anchors),
        "params": resolved_params,
        "seed": rng,
        "scoring": {"match": bool(match), "rule": _rule(recs, match)},
        "datasets": [],
        "records": recs,
    }
    for d in dsets:
        rs = [r for r in recs if r["dataset"] == d.name]
        entry = {"name": d.name, "path": str(d.root), "n_images": len(d),
                 "table": _summarise(rs, metrics, anchors), "gallery": []}
        entry["gallery"] = _bench_gallery(d, rs, [m.name for m in meths], metrics[0], gallery,
                                          outdir, match)
        report["datasets"].append(entry)
    render(report, outdir)
    return report


def _rule(records: list[dict[str, Any]], match: bool) -> str:
    """The scoring rule's line, naming the kinds of truth the scored records met."""
    from ..metrics import scoring_rule

    kinds = {r["binary_truth"] for r in records if r.get("binary_truth") is not None}
    binary = kinds.pop() if len(kinds) == 1 else (None if kinds else True)
    return scoring_rule(match=match, binary=binary)


def _bench_gallery(dataset, records, methods, primary, n, outdir: Path,
                   match: bool = False) -> list[dict[str, Any]]:
    """Thumbnails (image, truth, prediction, overlay) of the worst ``n`` images per method;
    the prediction is drawn as scored (:func:`physeg.metrics.scored_view`)."""
    from ..metrics import scored_view

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
                shown = channels_last(sample.image(), "auto")
                gt = pio.read_mask(sample.mask_paths[0])
            except Exception:  # noqa: BLE001 - unreadable pair: listed with its error only
                items.append({"id": r["id"], "status": r["status"], "error": r.get("error"),
                              "score": r["metrics"].get(primary), "panels": []})
                continue
            spatial = gt.ndim
            inputs = (sample.image_path, *sample.mask_paths)  # a picture never replaces them
            if base not in done_pictures:
                write_png(outdir / f"{base}_image.png",
                          shrink(middle_plane(image_rgb(shown), spatial), THUMB), inputs)
                write_png(outdir / f"{base}_truth.png",
                          shrink(label_rgb(middle_plane(gt, spatial)), THUMB), inputs)
                done_pictures.add(base)
            panels += [{"caption": "image", "src": f"{base}_image.png"},
                       {"caption": "truth", "src": f"{base}_truth.png"}]
            if r["status"] == "done":
                pred = scored_view(pio.read_mask(r["labels"]), gt, match=match)[0]
                mb = f"{base}_{_safe(meth)}"
                write_png(outdir / f"{mb}_pred.png",
                          shrink(label_rgb(middle_plane(pred, spatial)), THUMB), inputs)
                write_overlay(outdir / f"{mb}_overlay.png", middle_plane(shown, spatial),
                              middle_plane(pred, spatial), max_side=THUMB, protect=inputs,
                              legend=False)  # the page's legend explains the panels
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
    match: bool = False,
    rule: str = "",
) -> dict[str, Any]:
    """Report for ``physeg evaluate --report``: the score table and worst-first gallery.

    ``rows`` are the evaluate command's per-image rows (``id``, ``pred``, ``gt`` paths and one
    value per metric). The gallery shows truth, prediction and an agreement map (correct
    foreground white, false positives red, false negatives blue) of the labels as scored
    (:func:`physeg.metrics.scored_view` with ``match``); there is no image panel, as
    evaluate sees only label files. ``rule`` is the scoring rule's line, stated in the report.
    """
    from ..metrics import scored_view

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
        pred, gt = pio.read_mask(r["pred"]), pio.read_mask(r["gt"][0])
        shown, truth, _ = scored_view(pred, gt, match=match)
        spatial = gt.ndim
        base = f"img/{_safe(rec['id'])}"
        inputs = (r["pred"], *r["gt"])  # a picture never replaces a scored file
        write_png(outdir / f"{base}_truth.png",
                  shrink(label_rgb(middle_plane(gt, spatial)), THUMB), inputs)
        write_png(outdir / f"{base}_pred.png",
                  shrink(label_rgb(middle_plane(pred, spatial)), THUMB), inputs)
        write_png(outdir / f"{base}_errors.png",
                  shrink(error_rgb(middle_plane(shown, spatial), middle_plane(truth, spatial)),
                         THUMB), inputs)
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
        "versions": versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "metrics": metrics,
        "primary": metrics[0],
        "anchors": [],
        "params": {},
        "scoring": {"match": bool(match), "rule": rule},
        "datasets": [{"name": "evaluation", "path": f"{pred_dir} vs {gt_dir}",
                      "n_images": len(rows), "table": table,
                      "gallery": [{"method": name, "items": items}]}],
        "records": recs,
    }
    render(report, outdir)
    return report
