"""physeg's methods on the real development sets, against anchors run in the same process.

Regenerate (full run; about the time estimated in the results' Markdown)::

    pip install -e '.[bench]'                   # opencv-python-headless for GrabCut
    python benchmarks/real_images.py             # [--data DIR] [--datasets ...] [--methods ...]
    python benchmarks/real_images.py --datasets weizmann_horse --limit 3    # quick check

``--data`` is the datasets folder (default ``$PHYSEG_DATA``, see
:func:`physeg.data.datasets.data_root`); nothing is copied from it.

What it runs (issue 15, item 6):

- **Datasets** (development parts, ``<data>/<name>/manifest.csv``): ``weizmann_horse``, ``ph2``
  (full resolution), ``dsb2018`` (object = ``mask > 0``: all nuclei), ``wbc`` (object = cell =
  cytoplasm ∪ nucleus = ``mask > 0``), ``bsds500`` (the 50 development test images,
  multi-region) and ``synthetic`` (the 256² grid of ``heat_vs_anchors.py`` at σ = 0.3, made in
  memory: 6 shapes, bright shape on a dark background).
- **physeg methods** ``otsu``, ``chan-vese``, ``heat``, ``kinetic`` on the binary sets and
  ``dynaseg`` on ``bsds500``, each called exactly as a user would:
  ``physeg.segment(image, method=M, channel_axis=-1 if colour else None, rng=seed, **settings)``
  with the package's defaults when the script runs (row ``M``), plus the documented settings in
  :data:`BEST` (row ``M:name``).
- **Anchors** (binary sets only): scikit-image ``threshold_otsu`` (bright = 1),
  ``chan_vese`` (scikit-image defaults) and ``morphological_chan_vese`` (100 iterations,
  checkerboard start) on the grey image in [0, 1] (``skimage.color.rgb2gray``), and OpenCV
  ``grabCut`` (BGR uint8, rectangle = image minus a 5 % margin on each side, 5 iterations,
  ``GC_INIT_WITH_RECT``, no labels; foreground = ``GC_FGD | GC_PR_FGD``; ``cv2.setRNGSeed``).
- **Scores** (binary sets): *plain Dice* of label 1 against the object (what a user gets; the
  headline) and, beside it, the *oracle Dice*: the better of label 1 and its complement, which
  needs the truth to choose and so is an upper bound, not a result. IoU likewise (the WBC
  headline adds the plain IoU of the cell). Anchors have no object prior: their raw output is
  label 1. A failure (exception) scores 0 and is counted. ``bsds500``: Hungarian-matched mIoU
  "All" of :func:`physeg.metrics.bsds_protocols`, segment-weighted over the dataset, exactly as
  ``benchmarks/dynaseg_bsds.py`` (whose loaders and segment counts are reused); binary methods
  are not scored there.
- **Time**: one thread (BLAS/OpenMP variables set before numpy loads), one untimed warm-up
  call per method on a small synthetic image first, then process CPU seconds
  (``time.process_time``) and wall seconds of each call. The ratio to GrabCut is mean CPU
  seconds over the images GrabCut also ran, divided by GrabCut's mean on them.

Resuming: every finished (dataset, row, image) is appended at once to
``<cache>/records.jsonl`` (default ``out/real_images_cache``, git-ignored) with its labels in
``<cache>/pred/``; the key holds the dataset, row, image id, seed and the method's *resolved*
parameters (package defaults included) and a hash of the method's source files (its family
package and the shared modules below it; for anchors the library version), so a rerun skips
what is done and recomputes what a changed default or changed code would change. ``--fresh``
ignores the cache. Shards may run in parallel on one cache (say ``--datasets ph2 --tag shard1``
and ``--datasets weizmann_horse,dsb2018,wbc,bsds500,synthetic --tag shard2``, each one thread);
a final run without ``--tag`` then finds every record cached and writes the full results.

Outputs: ``benchmarks/results/<tag>.json`` (every record, the summary, the environment, the
command) and ``<tag>.md`` (tables, targets, ``Regenerate:`` line), ``<tag>_worst.png`` (one
mosaic: the 3 worst images of every physeg row) and an HTML report with the 6 worst images of
every (dataset, row), written by :func:`physeg.report._render.render` to ``--html-dir``
(default ``out/real_images_html``, outside ``results/``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.single_thread()  # before numpy loads

import argparse  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

STUDY = "real_images"
DATASETS = ("weizmann_horse", "ph2", "dsb2018", "wbc", "bsds500", "synthetic")
ALIASES = {"horse": "weizmann_horse", "bsds": "bsds500", "dsb": "dsb2018"}
MULTI_REGION = {"bsds500"}
BINARY_METHODS = ("otsu", "chan-vese", "heat", "kinetic")
REGION_METHODS = ("dynaseg",)
ANCHORS = ("skimage-otsu", "skimage-chan_vese", "skimage-morph_cv", "grabcut")
#: Documented settings per physeg method, beside its defaults: {method: {name: params}}.
#: Only what README.md documents; the lead adds to it. A row is ``method:name``.
BEST: dict[str, dict[str, dict[str, Any]]] = {
    # the two region models of heat side by side (the default "auto" picks one per image)
    # and the single-object post-processing (largest object, holes filled; issue 15 item 3)
    "heat": {"means": {"fidelity": "means"}, "mixtures": {"fidelity": "mixtures"},
             "one": {"objects": "one"}},
    # kinetic with the mixtures' object posterior as the particles' feature
    "kinetic": {"mixtures": {"fidelity": "mixtures"}},
}
TARGETS = {  # plain Dice of label 1 at defaults (issue 15); "grabcut": also >= GrabCut
    "weizmann_horse": {"dice": 0.82, "grabcut": True},
    "ph2": {"dice": 0.85, "grabcut": True},
    "dsb2018": {"dice": 0.85, "grabcut": False},
    "wbc": {"dice": None, "grabcut": True},
    "synthetic": {"min_dice": 0.99, "grabcut": False},
    "bsds500": {"hungarian_all": 0.35, "cpu_s": 15.0},
}
SPEED_TARGETS = {"heat": 0.2, "kinetic": 1.0}  # CPU seconds / GrabCut's, same images
GALLERY = 6
SYNTH_SIZE, SYNTH_SIGMA = 256, 0.3


# ---- data ----------------------------------------------------------------------------------


def dataset_items(data: Path, name: str, limit: int | None, stride: int) -> list[dict]:
    """Rows ``{"id", "image", "masks"}`` of one dataset, sorted by id (bsds500: the
    development test images), every ``stride``-th, the first ``limit``."""
    if name == "synthetic":
        from heat_vs_anchors import SHAPES

        rows = [{"id": s} for s in SHAPES]
    elif name == "bsds500":
        from dynaseg_bsds import read_rows

        if not (data / name / "manifest.csv").is_file():
            return []
        rows = read_rows(data / name, None, "test")
    else:
        path = data / name / "manifest.csv"
        if not path.is_file():
            return []
        with open(path, newline="") as fh:
            rows = sorted(csv.DictReader(fh), key=lambda r: r["id"])
    rows = rows[::max(1, stride)]
    return rows[:limit] if limit else rows


def load_item(data: Path, name: str, row: dict) -> tuple[np.ndarray, Any]:
    """(image, truth): truth is the object mask (bool) or, for bsds500, the annotators' list."""
    if name == "synthetic":
        from heat_vs_anchors import synthetic_image

        return synthetic_image(row["id"], SYNTH_SIZE, SYNTH_SIGMA)
    if name == "bsds500":
        from dynaseg_bsds import load

        return load(data / name, row)
    from physeg.io import read_image, read_mask

    img = read_image(data / name / row["image"])
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    mask = read_mask(data / name / row["masks"].split(";")[0]) > 0
    return img, mask


# ---- methods -------------------------------------------------------------------------------


def rows_for(dataset: str, selected: list[str] | None) -> list[str]:
    """Row labels run on ``dataset``: physeg defaults, documented settings, anchors."""
    methods = REGION_METHODS if dataset in MULTI_REGION else BINARY_METHODS
    out = []
    for m in methods:
        out.append(m)
        out += [f"{m}:{k}" for k in BEST.get(m, {})]
    if dataset not in MULTI_REGION:
        out += list(ANCHORS)
    if selected:
        out = [r for r in out if r in selected or r.split(":")[0] in selected]
    return out


def row_settings(row: str) -> tuple[str, dict[str, Any]]:
    method, _, name = row.partition(":")
    return method, dict(BEST[method][name]) if name else {}


def resolved_params(row: str) -> dict[str, Any]:
    """The parameters a row really runs with (package defaults overlaid by its settings), so
    that the cache key changes when a default changes."""
    method, settings = row_settings(row)
    if row in ANCHORS:
        return {"grabcut": {"iterations": 5, "margin": 0.05},
                "skimage-morph_cv": {"num_iter": 100, "init_level_set": "checkerboard"}
                }.get(row, {})
    import physeg

    params = {p.name: p.default for p in physeg.get_method(method).params}
    params.update(settings)
    return json.loads(json.dumps(params, default=str))


#: besides its family package, a row's stamp hashes every top-level module of physeg (the
#: shared numerics a family may import: _regions, _foreground, _features, _kmeans, ...; a
#: list of names had missed _regions, so a changed rule was served from the cache) and the
#: registry
SHARED_CODE = ("families/_registry.py",)


def code_stamp(row: str) -> str:
    """A hash of the code a row runs: the physeg family's source files, every top-level physeg
    module and the registry (so that a cached record is recomputed after the method or a
    shared module changed), or the anchor library's version."""
    if row in ANCHORS:
        import importlib.metadata as md

        pkg = "opencv-python-headless" if row == "grabcut" else "scikit-image"
        try:
            return f"{pkg} {md.version(pkg)}"
        except md.PackageNotFoundError:
            return pkg
    import importlib

    import physeg

    mod = importlib.import_module(physeg.get_method(row_settings(row)[0]).func.__module__)
    src = Path(mod.__file__)
    files = sorted(src.parent.rglob("*.py")) if src.name == "__init__.py" else [src]
    root = Path(physeg.__file__).parent
    h = hashlib.sha1()
    for f in [*files, *sorted(root.glob("*.py")), *(root / s for s in SHARED_CODE)]:
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:12]


def grey01(img: np.ndarray) -> np.ndarray:
    """Grey image in [0, 1] for the scikit-image anchors (``rgb2gray`` for colour)."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    return rgb2gray(img) if img.ndim == 3 else img_as_float(img)


def grabcut(img: np.ndarray, seed: int) -> np.ndarray:
    """OpenCV GrabCut from a rectangle (image minus a 5 % margin per side), 5 iterations."""
    import cv2

    from physeg._validate import display_rgb

    rgb = img if img.dtype == np.uint8 else np.round(display_rgb(img) * 255).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    h, w = bgr.shape[:2]
    mx, my = max(1, int(round(0.05 * w))), max(1, int(round(0.05 * h)))
    rect = (mx, my, w - 2 * mx, h - 2 * my)
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(int(seed))
    cv2.grabCut(bgr, mask, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.int32)


def runner(row: str, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function image -> integer labels for one row."""
    if row == "skimage-otsu":
        from skimage.filters import threshold_otsu

        return lambda img: (grey01(img) > threshold_otsu(grey01(img))).astype(np.int32)
    if row == "skimage-chan_vese":
        from skimage.segmentation import chan_vese

        return lambda img: np.asarray(chan_vese(grey01(img)), dtype=np.int32)
    if row == "skimage-morph_cv":
        from skimage.segmentation import morphological_chan_vese

        return lambda img: np.asarray(morphological_chan_vese(
            grey01(img), num_iter=100, init_level_set="checkerboard"), dtype=np.int32)
    if row == "grabcut":
        return lambda img: grabcut(img, seed)
    import physeg

    method, settings = row_settings(row)
    return lambda img: np.asarray(physeg.segment(
        img, method=method, channel_axis=-1 if img.ndim == 3 else None, rng=seed, **settings))


def warm_up(run: Callable) -> None:
    """One untimed call on a small colour image (imports, FFT plans, first-call costs)."""
    yy, xx = np.mgrid[:64, :64]
    obj = (yy - 30) ** 2 + (xx - 34) ** 2 < 15 ** 2
    img = np.where(obj[..., None], [200, 80, 60], [40, 120, 180]).astype(np.uint8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(img)
    except Exception:  # noqa: BLE001 - the timed call records the error
        pass


# ---- scores --------------------------------------------------------------------------------


def overlap(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(Dice, IoU) of two boolean masks; both empty -> 1 (as :func:`physeg.metrics.dice`)."""
    inter, s = float(np.sum(pred & gt)), float(pred.sum() + gt.sum())
    return (2 * inter / s if s else 1.0), (inter / (s - inter) if s else 1.0)


def binary_scores(labels: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
    """Plain (label 1) and oracle (better polarity) Dice / IoU against the object mask."""
    p = labels == 1
    d1, i1 = overlap(p, gt)
    d0, i0 = overlap(~p, gt)
    flip = d0 > d1
    return {"dice": d1, "iou": i1, "dice_oracle": max(d1, d0), "iou_oracle": i0 if flip else i1,
            "oracle_flipped": bool(flip), "fg_fraction": float(p.mean()),
            "n_labels": int(np.unique(labels).size)}


def region_scores(labels: np.ndarray, gts: list[np.ndarray]) -> dict[str, Any]:
    """BSDS500 Hungarian protocols (and best-match All, for reference) of one image."""
    from dynaseg_bsds import seg_counts

    from physeg import metrics

    return {"hungarian": metrics.bsds_protocols(labels, gts, score="hungarian"),
            "best_match_all": metrics.bsds_protocols(labels, gts, score="best_match")["all"],
            "n_segments": seg_counts(gts), "n_labels": int(np.unique(labels).size)}


def failed_scores(multi: bool) -> dict[str, Any]:
    if multi:
        return {"hungarian": {"all": 0.0, "fine": 0.0, "coarse": 0.0, "mean": 0.0},
                "best_match_all": 0.0, "n_segments": None, "n_labels": 0}
    return {"dice": 0.0, "iou": 0.0, "dice_oracle": 0.0, "iou_oracle": 0.0,
            "oracle_flipped": False, "fg_fraction": None, "n_labels": 0}


# ---- cache ---------------------------------------------------------------------------------


class Cache:
    """``records.jsonl`` (one finished record a line) and ``pred/<key hash>.npz`` labels."""

    def __init__(self, folder: Path, fresh: bool):
        self.folder = Path(folder)
        self.file = self.folder / "records.jsonl"
        self.records: dict[str, dict] = {}
        if self.file.is_file() and not fresh:
            for line in self.file.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: recomputed
                    continue
                self.records[rec["key"]] = rec

    @staticmethod
    def key(dataset: str, row: str, image_id: str, params: dict, seed: int, code: str) -> str:
        return json.dumps([dataset, row, image_id, seed, params, code], sort_keys=True,
                          default=str)

    def pred_path(self, key: str) -> Path:
        return self.folder / "pred" / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz")

    def add(self, rec: dict, labels: np.ndarray | None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if labels is not None:
            path = self.pred_path(rec["key"])
            path.parent.mkdir(parents=True, exist_ok=True)
            dtype = np.uint8 if labels.min() >= 0 and labels.max() < 256 else np.int32
            np.savez_compressed(path, labels=labels.astype(dtype))
        with open(self.file, "a") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")
        self.records[rec["key"]] = rec

    def labels(self, key: str) -> np.ndarray | None:
        path = self.pred_path(key)
        return np.load(path)["labels"] if path.is_file() else None


# ---- summary -------------------------------------------------------------------------------


def summarise(records: list[dict]) -> list[dict]:
    """One entry per (dataset, row): scores, seconds and the ratio to GrabCut."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["row"]), []).append(r)
    out = []
    for (ds, row), rs in groups.items():
        e: dict[str, Any] = {"dataset": ds, "row": row, "anchor": row in ANCHORS, "n": len(rs),
                             "failed": sum(r["error"] is not None for r in rs),
                             "cpu_s_mean": float(np.mean([r["cpu_s"] for r in rs])),
                             "cpu_s_median": float(np.median([r["cpu_s"] for r in rs])),
                             "wall_s_mean": float(np.mean([r["wall_s"] for r in rs]))}
        if ds in MULTI_REGION:
            ok = [r for r in rs if r["n_segments"]]
            w = np.array([r["n_segments"]["all"] for r in ok], float)
            v = np.array([r["hungarian"]["all"] for r in ok], float)
            e["hungarian_all"] = float((w * v).sum() / w.sum()) if w.sum() else 0.0
            e["hungarian_all_imgw"] = float(np.mean([r["hungarian"]["all"] for r in rs]))
            e["best_match_all_imgw"] = float(np.mean([r["best_match_all"] for r in rs]))
        else:
            for k in ("dice", "dice_oracle", "iou", "iou_oracle"):
                vals = [r[k] for r in rs]
                e[f"{k}_mean"] = float(np.mean(vals))
                e[f"{k}_median"] = float(np.median(vals))
            e["dice_min"] = float(np.min([r["dice"] for r in rs]))
            e["oracle_flipped"] = sum(r["oracle_flipped"] for r in rs)
            gc = {r["id"]: r for r in groups.get((ds, "grabcut"), [])}
            same = [r for r in rs if r["id"] in gc]
            if same:
                for t in ("cpu_s", "wall_s"):
                    den = float(np.mean([gc[r["id"]][t] for r in same]))
                    num = float(np.mean([r[t] for r in same]))
                    e[f"{t}_ratio_grabcut"] = num / den if den > 0 else None
                e["dice_grabcut_same"] = float(np.mean([gc[r["id"]]["dice"] for r in same]))
                e["dice_same"] = float(np.mean([r["dice"] for r in same]))
                e["n_same_grabcut"] = len(same)
        out.append(e)
    return out


def targets(summary: list[dict]) -> list[dict]:
    """The issue's targets checked on this run (physeg rows at defaults, no labels)."""
    by = {(e["dataset"], e["row"]): e for e in summary}
    checks = []
    for (ds, row), e in by.items():
        if row in ANCHORS or ":" in row or ds not in TARGETS:
            continue
        t = TARGETS[ds]
        if ds in MULTI_REGION:
            checks.append({"dataset": ds, "row": row, "what": "H-mIoU All ≥ 0.35",
                           "value": e["hungarian_all"], "pass": e["hungarian_all"] >= 0.35})
            checks.append({"dataset": ds, "row": row, "what": "CPU s / image ≤ 15",
                           "value": e["cpu_s_mean"], "pass": e["cpu_s_mean"] <= 15.0})
            continue
        if t.get("dice") is not None:
            checks.append({"dataset": ds, "row": row, "what": f"plain Dice ≥ {t['dice']}",
                           "value": e["dice_mean"], "pass": e["dice_mean"] >= t["dice"]})
        if t.get("min_dice") is not None:
            checks.append({"dataset": ds, "row": row, "what": f"min plain Dice ≥ {t['min_dice']}",
                           "value": e["dice_min"], "pass": e["dice_min"] >= t["min_dice"]})
        if t.get("grabcut") and "dice_grabcut_same" in e:
            checks.append({"dataset": ds, "row": row,
                           "what": f"plain Dice ≥ GrabCut's ({e['dice_grabcut_same']:.3f})",
                           "value": e["dice_same"],
                           "pass": e["dice_same"] >= e["dice_grabcut_same"]})
        if row in SPEED_TARGETS and e.get("cpu_s_ratio_grabcut") is not None:
            lim = SPEED_TARGETS[row]
            checks.append({"dataset": ds, "row": row, "what": f"CPU s / GrabCut's ≤ {lim:g}",
                           "value": e["cpu_s_ratio_grabcut"],
                           "pass": e["cpu_s_ratio_grabcut"] <= lim})
    return checks


def _f(x: Any, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def markdown(res: dict) -> str:
    env = res["environment"]
    lines = [
        "# physeg on the real development sets, with anchors in the same run", "",
        ("" if res["complete"] else "**Partial results (a run that had not finished).**\n\n")
        + f"One thread, {env.get('cpus')} CPUs (shared machine; load average at the start "
        f"{', '.join(f'{x:.1f}' for x in env.get('load_average', []))}), seed {res['seed']}, "
        f"commit `{env.get('commit', '?')}`{' (+ local changes)' if env.get('dirty') else ''}; "
        f"{res['n_computed']} records computed, {res['n_cached']} from the cache; wall "
        f"{res['wall_s']:.0f} s. Images: {res['selection']}.", "",
        "**Plain Dice** = Dice of label 1 against the object (what a user gets; the headline). "
        "**Oracle Dice** = the better of label 1 and its complement: it needs the truth to pick "
        "the polarity, so it is an upper bound, not a result. Anchors (scikit-image, OpenCV) "
        "have no object prior: their raw output is label 1. Failures score 0. Seconds are per "
        "image, one thread; ×GrabCut = mean CPU seconds / GrabCut's on the same images.", ""]
    summ = res["summary"]
    for ds in res["datasets"]:
        es = [e for e in summ if e["dataset"] == ds]
        if not es:
            continue
        n = max(e["n"] for e in es)
        lines += [f"## {ds} ({n} images)", ""]
        if ds in MULTI_REGION:
            lines += ["| row | n | failed | H-mIoU All (segment-w.) | H All (image-w.) | "
                      "best-match All (image-w.) | CPU s/img | wall s/img |",
                      "|---|---|---|---|---|---|---|---|"]
            for e in es:
                lines.append(f"| {e['row']} | {e['n']} | {e['failed']} | "
                             f"**{_f(e['hungarian_all'])}** | {_f(e['hungarian_all_imgw'])} | "
                             f"{_f(e['best_match_all_imgw'])} | {_f(e['cpu_s_mean'], 2)} | "
                             f"{_f(e['wall_s_mean'], 2)} |")
        else:
            iou = ds == "wbc"
            lines += ["| row | n | failed | **plain Dice** mean | median | min | "
                      + ("plain IoU (cell) | " if iou else "")
                      + "oracle Dice (upper bound) | flipped by oracle | CPU s/img | "
                      "wall s/img | ×GrabCut (CPU) |",
                      "|---" * (11 + iou) + "|"]
            for e in es:
                lines.append(
                    f"| {e['row']}{' (anchor)' if e['anchor'] else ''} | {e['n']} | "
                    f"{e['failed']} | **{_f(e['dice_mean'])}** | {_f(e['dice_median'])} | "
                    f"{_f(e['dice_min'])} | " + (f"{_f(e['iou_mean'])} | " if iou else "")
                    + f"{_f(e['dice_oracle_mean'])} | {e['oracle_flipped']} | "
                    f"{_f(e['cpu_s_mean'], 3)} | {_f(e['wall_s_mean'], 3)} | "
                    f"{_f(e.get('cpu_s_ratio_grabcut'), 2)} |")
        errs = [r for r in res["records"] if r["dataset"] == ds and r["error"]]
        if errs:
            lines += ["", "Failures: " + "; ".join(
                f"{r['row']} `{r['id']}`: {r['error']}" for r in errs[:8])
                + (f" (and {len(errs) - 8} more)" if len(errs) > 8 else "")]
        lines.append("")
    if res["targets"]:
        lines += ["## Targets (issue 15; physeg rows at defaults, no labels)", "",
                  "| dataset | row | target | value | met |", "|---|---|---|---|---|"]
        for c in res["targets"]:
            lines.append(f"| {c['dataset']} | {c['row']} | {c['what']} | {_f(c['value'])} | "
                         f"{'yes' if c['pass'] else '**no**'} |")
        lines.append("")
    lines += ["## Settings", "", "| row | parameters |", "|---|---|"]
    for row, p in res["params"].items():
        lines.append(f"| {row} | {', '.join(f'{k}={v}' for k, v in p.items()) or '—'} |")
    lines += ["", f"Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}. "
              f"Figure: `{res['tag']}_worst.png` (3 worst images of each physeg row: image, "
              "then errors: white = object found, red = false positive, blue = missed); HTML "
              f"galleries (6 worst per row): `{res['html'] or 'not written'}`.", ""]
    return "\n".join(lines)


# ---- pictures ------------------------------------------------------------------------------


def worst(records: list[dict], ds: str, row: str, n: int) -> list[dict]:
    key = "hungarian" if ds in MULTI_REGION else "dice"
    rs = [r for r in records if r["dataset"] == ds and r["row"] == row]
    return sorted(rs, key=lambda r: (r[key]["all"] if key == "hungarian" else r[key]))[:n]


def html_report(res: dict, data: Path, cache: Cache, outdir: Path) -> Path:
    """The galleries through :func:`physeg.report._render.render` (index.html, report.md)."""
    from physeg.overlay import shrink
    from physeg.report._render import error_rgb, image_rgb, label_rgb, render, write_png

    nan = float("nan")
    metric_names = ["plain Dice", "oracle Dice", "plain IoU", "H-mIoU All"]
    datasets = []
    for ds in res["datasets"]:
        es = [e for e in res["summary"] if e["dataset"] == ds]
        if not es:
            continue
        rows_by_id = {str(r["id"]): r for r in dataset_items(data, ds, None, 1)}
        table, gallery = [], []
        for e in es:
            multi = ds in MULTI_REGION
            vals = [nan, nan, nan, e["hungarian_all"]] if multi else \
                [e["dice_mean"], e["dice_oracle_mean"], e["iou_mean"], nan]
            sd = [nan] * 4 if multi else [float(np.std([r[k] for r in res["records"]
                                                        if r["dataset"] == ds
                                                        and r["row"] == e["row"]]))
                                          for k in ("dice", "dice_oracle", "iou")] + [nan]
            table.append({"method": e["row"], "anchor": e["anchor"], "n": e["n"],
                          "failed": e["failed"],
                          "metrics": {m: {"mean": v, "std": s}
                                      for m, v, s in zip(metric_names, vals, sd, strict=True)},
                          "seconds": {"median": e["cpu_s_median"],
                                      "total": e["cpu_s_mean"] * e["n"]},
                          "peak_mb": {"median": nan, "max": nan}})
            items = []
            for r in worst(res["records"], ds, e["row"], GALLERY):
                img, truth = load_item(data, ds, rows_by_id[str(r["id"])])
                gt = truth[0] if multi else truth.astype(np.int32)
                base = f"img/{ds}/{hashlib.sha1(str(r['id']).encode()).hexdigest()[:12]}"
                write_png(outdir / f"{base}_image.png", shrink(image_rgb(img), 160))
                write_png(outdir / f"{base}_truth.png", shrink(label_rgb(gt), 160))
                panels = [{"caption": "image", "src": f"{base}_image.png"}]
                lab = cache.labels(r["key"])
                if lab is not None:
                    mb = f"{base}_{hashlib.sha1(e['row'].encode()).hexdigest()[:8]}"
                    pic = label_rgb(lab) if multi else error_rgb((lab == 1).astype(int), gt)
                    write_png(outdir / f"{mb}_pred.png", shrink(pic, 160))
                    panels.append({"caption": "prediction" if multi else
                                   "label 1 (red FP, blue FN)", "src": f"{mb}_pred.png"})
                panels.append({"caption": "truth", "src": f"{base}_truth.png"})
                score = r["hungarian"]["all"] if multi else r["dice"]
                items.append({"id": r["id"], "status": "failed" if r["error"] else "done",
                              "error": r["error"], "score": score, "panels": panels})
            gallery.append({"method": e["row"], "items": items})
        datasets.append({"name": ds, "path": str(data / ds) if ds != "synthetic" else "memory",
                         "n_images": max(e["n"] for e in es), "table": table,
                         "gallery": gallery})
    rep = {"kind": "real_images", "title": "physeg on real development sets (real_images)",
           "created": res["environment"]["date_utc"], "command": res["command"],
           "machine": {"cpus": res["environment"]["cpus"], "executor": "serial, one thread"},
           "metrics": metric_names, "primary": "plain Dice (H-mIoU All on bsds500)",
           "datasets": datasets, "versions": res["versions"], "params": res["params"],
           "seed": res["seed"], "wall_seconds": res["wall_s"]}
    return render(rep, outdir)["html"]


def mosaic(res: dict, data: Path, cache: Cache, path: Path, n: int = 3) -> Path | None:
    """One PNG: for every physeg row (defaults and documented settings), its ``n`` worst
    images, each as image | errors (binary) or image | labels (bsds500)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from physeg.report._render import error_rgb, image_rgb, label_rgb

    rows = [(e["dataset"], e["row"]) for e in res["summary"] if not e["anchor"]]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 2 * n, figsize=(1.5 * 2 * n, 1.5 * len(rows)),
                             squeeze=False)
    items_cache: dict[str, dict] = {}
    for i, (ds, row) in enumerate(rows):
        if ds not in items_cache:
            items_cache[ds] = {str(r["id"]): r for r in dataset_items(data, ds, None, 1)}
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.axis("off")
        axes[i, 0].axis("on")
        axes[i, 0].set_ylabel(f"{ds}\n{row}", fontsize=6)
        for j, r in enumerate(worst(res["records"], ds, row, n)):
            img, truth = load_item(data, ds, items_cache[ds][str(r["id"])])
            lab = cache.labels(r["key"])
            axes[i, 2 * j].imshow(image_rgb(img))
            score = r["hungarian"]["all"] if ds in MULTI_REGION else r["dice"]
            axes[i, 2 * j].set_title(f"{str(r['id'])[:12]} {score:.2f}", fontsize=5)
            if lab is not None:
                pic = label_rgb(lab) if ds in MULTI_REGION else \
                    error_rgb((lab == 1).astype(int), truth.astype(int))
                axes[i, 2 * j + 1].imshow(pic)
    fig.suptitle("worst images per physeg row (plain Dice / H-mIoU All): image | errors "
                 "(white found, red false positive, blue missed)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


# ---- main ----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("physeg", "numpy", "scipy", "scikit-image", "opencv-python-headless", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def git_state() -> dict[str, Any]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=_common.REPO, capture_output=True, text=True,
                              timeout=20).stdout.strip()

    try:
        return {"commit": git("rev-parse", "--short", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--", "src"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_data_argument(ap)
    ap.add_argument("--datasets", default=",".join(DATASETS),
                    help=f"comma list of {DATASETS} (aliases {ALIASES})")
    ap.add_argument("--methods", default=None,
                    help="comma list of rows or method names (default: all that apply), e.g. "
                         "heat,kinetic,grabcut,dynaseg:superpixels")
    ap.add_argument("--limit", type=int, default=None, help="first N images per dataset")
    ap.add_argument("--stride", type=int, default=1, help="every K-th image (sorted by id)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default=STUDY, help="stem of the result files")
    ap.add_argument("--out", type=Path, default=_common.RESULTS)
    ap.add_argument("--cache", type=Path, default=_common.REPO / "out" / f"{STUDY}_cache")
    ap.add_argument("--html-dir", type=str, default=str(_common.REPO / "out" / f"{STUDY}_html"),
                    help="folder of the HTML report with the galleries ('' = none)")
    ap.add_argument("--no-figure", action="store_true", help="skip <tag>_worst.png")
    ap.add_argument("--fresh", action="store_true", help="ignore the cache (recompute all)")
    args = ap.parse_args(argv)
    cmd = _common.command("real_images.py", sys.argv[1:] if argv is None else list(argv))
    datasets = [ALIASES.get(d.strip(), d.strip()) for d in args.datasets.split(",") if d.strip()]
    for d in datasets:
        if d not in DATASETS:
            ap.error(f"unknown dataset {d!r}; choose from {DATASETS}")
    selected = [m.strip() for m in args.methods.split(",")] if args.methods else None
    known = {r for d in DATASETS for r in rows_for(d, None)} | {r.split(":")[0] for d in DATASETS
                                                              for r in rows_for(d, None)}
    for m in selected or []:
        if m not in known:
            ap.error(f"unknown method or row {m!r}; choose from {sorted(known)}")
    data, cache = Path(args.data), Cache(args.cache, args.fresh)
    t0 = time.perf_counter()
    env = {**_common.environment(), **git_state(), "threads": 1,
           "thread_variables": {v: os.environ.get(v) for v in _common.THREAD_VARIABLES}}
    records: list[dict] = []
    counts = {"computed": 0, "cached": 0}
    params: dict[str, dict] = {}
    codes: dict[str, str] = {}
    warmed: set[str] = set()
    selection = {}
    res: dict[str, Any] = {}

    def save(complete: bool) -> None:
        summary = summarise(records)
        res.update({
            "study": STUDY, "tag": args.tag, "complete": complete, "command": cmd,
            "environment": env, "versions": versions(), "seed": args.seed,
            "datasets": datasets, "selection": ", ".join(f"{d} {n}" for d, n in
                                                       selection.items()) or "none",
            "limit": args.limit, "stride": args.stride, "params": params, "code": codes,
            "n_computed": counts["computed"], "n_cached": counts["cached"],
            "wall_s": time.perf_counter() - t0, "html": None,
            "summary": summary, "targets": targets(summary), "records": records})
        _common.write_results(args.tag, res, markdown(res), args.out, regenerate=cmd)

    for ds in datasets:
        items = dataset_items(data, ds, args.limit, args.stride)
        if not items:
            print(f"{ds}: no manifest.csv under {data / ds}; skipped", flush=True)
            continue
        rows = rows_for(ds, selected)
        if not rows:
            continue
        selection[ds] = len(items)
        for row in rows:
            params.setdefault(row, resolved_params(row))
            codes.setdefault(row, code_stamp(row))
        for item in items:
            img = truth = None
            for row in rows:
                key = Cache.key(ds, row, str(item["id"]), params[row], args.seed, codes[row])
                if key in cache.records:
                    records.append(cache.records[key])
                    counts["cached"] += 1
                    continue
                if img is None:
                    img, truth = load_item(data, ds, item)
                run = runner(row, args.seed)
                if row not in warmed:
                    warm_up(run)
                    warmed.add(row)
                load1 = os.getloadavg()[0]
                c0, w0 = time.process_time(), time.perf_counter()
                err, labels = None, None
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        labels = run(img)
                except Exception as exc:  # noqa: BLE001 - a failure is a result
                    err = f"{type(exc).__name__}: {str(exc)[:160]}"
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                multi = ds in MULTI_REGION
                sc = failed_scores(multi) if labels is None else (
                    region_scores(labels, truth) if multi else binary_scores(labels, truth))
                rec = {"key": key, "dataset": ds, "row": row, "id": str(item["id"]),
                       "shape": list(img.shape), "error": err, "cpu_s": cpu, "wall_s": wall,
                       "load1": load1, "commit": env.get("commit"), "code": codes[row], **sc}
                cache.add(rec, labels)
                records.append(rec)
                counts["computed"] += 1
                score = sc["hungarian"]["all"] if multi else sc["dice"]
                print(f"{ds} {str(item['id'])[:16]:16s} {row:22s} "
                      f"{'H-all' if multi else 'dice'} {score:.3f} cpu {cpu:7.3f}s"
                      + (f"  {err}" if err else ""), flush=True)
        save(False)
    save(True)
    if args.html_dir and records:  # '' (a str, not Path('') == '.') means no HTML
        try:
            page = Path(html_report(res, data, cache, Path(args.html_dir))).resolve()
            res["html"] = str(page.relative_to(_common.REPO) if page.is_relative_to(
                _common.REPO) else page)
        except Exception as exc:  # noqa: BLE001 - the numbers are written already
            print(f"HTML report failed: {type(exc).__name__}: {exc}", flush=True)
    if not args.no_figure and records:
        try:
            mosaic(res, data, cache, Path(args.out) / f"{args.tag}_worst.png")
        except Exception as exc:  # noqa: BLE001
            print(f"figure failed: {type(exc).__name__}: {exc}", flush=True)
    if res.get("html"):
        res["wall_s"] = time.perf_counter() - t0
        _common.write_results(args.tag, res, markdown(res), args.out, regenerate=cmd)
    print((Path(args.out) / f"{args.tag}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
