"""Plain U-Net against PDE-regularised U-Net in low-sample regimes, in and out of domain.

Tests the claim of seed 001 (Poudel & Khadka 2026: PDE priors improve accuracy, boundary
fidelity and generalisation to an unseen domain when few labels exist) on the data we have:

* **DSB2018 nuclei** (``<data>/dsb2018``, binary: instance labels > 0). A fixed pool of 50 grey
  fluorescence images (permutation seed 20260201) supplies the training sets: for seed s, S
  images drawn from the pool with ``default_rng(1000 + s)`` (S ∈ {5, 10, 20, 50}). Test sets:
  the other grey images (in domain; the first ``--limit`` = 40 of the 87 in a fixed random
  order) and the colour / brightfield images (unseen domain; all 27). Every image is reduced
  to one grey channel (mean of R, G, B), since the model is trained on grey data.
* **White blood cells**: trained on ``<data>/wbc`` (Dataset 1, RGB, binary: cell = cytoplasm
  or nucleus, label > 0), S = 10 per seed from a fixed pool of 30; tested on 40 of the other
  45 ``wbc`` images (in domain) and on all 25 ``<data>/wbc_dataset2`` images (other stain
  and camera; unseen domain) at native resolution.

Models (same U-Net, same trainer, same seeds; ``physeg.families.nets.pde_unet.fit_pde_unet``):
two-stage schedule, stage I = Dice + CE for ``--iterations``/2 = 120 iterations (shared by every
model of a (dataset, S, seed) cell), stage II = the other half at lr × 0.1, fresh Adam,

* ``plain``: stage II without priors (a plain U-Net trained for the same iterations);
* ``pde``: stage II with the ``allen-cahn`` preset (λ_RD = λ_PF = 1, ε = 1.5 px, D = ε²/4);
* weight sweep (DSB, S = 10, every seed): λ_RD = λ_PF = 10, the paper's preset
  (``poudel2026``: λ = 1e-4, D = 5, ε = 0.05 px), and
  the single-stage schedule (priors from the first iteration at full lr, λ = 1).

Training: U-Net widths 8,16,32,64, random 96 × 96 crops (flips, 90° turns, intensity
jitter), batch 8, Adam lr 1e-3, no validation split (the last weights are kept, as in the
authors' code). Inference on the whole image (fully convolutional, reflect-padded to a
multiple of 8), no tiling.

Metrics per test image (``physeg.metrics``, binary foreground): Dice, IoU, boundary F1 (2 px)
and HD95 (px; an empty prediction or ground truth scores the image diagonal). Per seed the
mean over test images; the table gives mean ± standard deviation over seeds, the paired
difference (pde − plain) per seed, how many seeds improved, and a Wilcoxon signed-rank
p-value over all (image, seed) pairs.

Parallelism: ``--workers`` processes (default 2 = the 2 cores), torch with one thread each.
Timings: wall time and the sum of the workers' CPU seconds; the idle 2-core estimate is
CPU / 2.

Regenerate::

    python benchmarks/pde_unet_shift.py                 # default setting (full table)
    python benchmarks/pde_unet_shift.py --limit 5 --quick   # smoke test
    python benchmarks/pde_unet_shift.py --render-only       # re-render the table (+ note)

The dataset folder is ``--data`` (default ``$PHYSEG_DATA``, see
:func:`physeg.data.datasets.data_root`). Results (``--out``, default ``benchmarks/results``):
``pde_unet_shift.json`` and ``pde_unet_shift.md`` (the table; ``pde_unet_shift_note.md``, kept
by hand, is appended to it), ``pde_unet_shift_cells.jsonl`` (per-cell records) and
``pde_unet_shift.png`` (figure).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
import _common  # noqa: E402

METRICS = ("dice", "iou", "bf1", "hd95")
MAIN = {"plain": {"lambda_rd": 0.0, "lambda_pf": 0.0}, "pde": {"preset": "allen-cahn"}}
SWEEP = {
    "λ=10": {"lambda_rd": 10.0, "lambda_pf": 10.0},
    "paper preset": {"preset": "poudel2026"},
    "single-stage (λ=1)": {"schedule": "single"},
}
SWEEP_S = 10

_DATA: dict = {}


# ----------------------------------------------------------------------------------------------
# data


def _read(path: Path) -> np.ndarray:
    from physeg.io import read_image

    return read_image(path)


def _grey(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else np.round(img[..., :3].mean(axis=-1)).astype(np.uint8)


def load_dsb(root: Path, n_test: int | None):
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    grey = sorted(r["id"] for r in rows if r["image_kind"] == "gray")
    colour = sorted(r["id"] for r in rows if r["image_kind"] != "gray")
    perm = np.random.default_rng(20260201).permutation(len(grey))
    pool = [grey[i] for i in perm[:50]]
    rest = [grey[i] for i in perm[50:]]
    if n_test is not None:
        rest = rest[:n_test]
        colour = colour[:n_test]

    def get(ids):
        return ([_grey(_read(root / "images" / f"{i}.png")) for i in ids],
                [(_read(root / "masks" / f"{i}.png") > 0).astype(np.uint8) for i in ids])

    return {"pool": (pool, *get(pool)), "in": (rest, *get(rest)), "out": (colour, *get(colour)),
            "channel_axis": None}


def load_wbc(root1: Path, root2: Path, n_test: int | None):
    def ids(root):
        return sorted(r["id"] for r in csv.DictReader(open(root / "manifest.csv")))

    ids1, ids2 = ids(root1), ids(root2)
    perm = np.random.default_rng(20260202).permutation(len(ids1))
    pool = [ids1[i] for i in perm[:30]]
    rest = [ids1[i] for i in perm[30:]]
    if n_test is not None:
        rest, ids2 = rest[:n_test], ids2[:n_test]

    def get(root, ii):
        return ([_read(root / "images" / f"{i}.png")[..., :3] for i in ii],
                [(_read(root / "masks" / f"{i}.png") > 0).astype(np.uint8) for i in ii])

    return {"pool": (pool, *get(root1, pool)), "in": (rest, *get(root1, rest)),
            "out": (ids2, *get(root2, ids2)), "channel_axis": -1}


def _dataset(name: str, data_root: Path, n_test: int | None):
    key = (name, n_test)
    if key not in _DATA:
        if name == "dsb2018":
            _DATA[key] = load_dsb(data_root / "dsb2018", n_test)
        else:
            _DATA[key] = load_wbc(data_root / "wbc", data_root / "wbc_dataset2", n_test)
    return _DATA[key]


# ----------------------------------------------------------------------------------------------
# one (dataset, S, seed) cell: shared stage I, every stage-II variant, evaluation


def score(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    from physeg import metrics

    diag = float(np.hypot(*gt.shape))
    return {
        "dice": float(metrics.dice(pred, gt, average="binary")),
        "iou": float(metrics.iou(pred, gt, average="binary")),
        "bf1": float(metrics.boundary_f1(pred, gt, tolerance=2.0, average="binary")),
        "hd95": float(metrics.hausdorff95(pred, gt, average="binary", empty=diag)),
    }


def run_cell(job: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from physeg.families.nets.pde_unet import fit_pde_unet

    t_wall, t_cpu = time.perf_counter(), time.process_time()
    d = _dataset(job["dataset"], Path(job["data"]), job["n_test"])
    ca = d["channel_axis"]
    pool_ids, pool_x, pool_y = d["pool"]
    pick = np.sort(np.random.default_rng(1000 + job["seed"]).choice(
        len(pool_ids), size=job["S"], replace=False))
    xs, ys = [pool_x[i] for i in pick], [pool_y[i] for i in pick]
    common = dict(widths="8,16,32,64", patch=job["patch"], batch_size=8, lr=1e-3,
                  val_fraction=0.0, threads=1, channel_axis=ca, rng=job["seed"],
                  iterations=job["iterations"])
    stage1 = fit_pde_unet(xs, ys, stage1_fraction=1.0,
                          **{**common, "iterations": job["iterations"] // 2})
    out = {"job": {k: job[k] for k in ("dataset", "S", "seed")},
           "train_ids": [pool_ids[i] for i in pick], "variants": {}, "figure": {}}
    for name, setting in job["variants"].items():
        t0 = time.process_time()
        if setting.get("schedule") == "single":
            model = fit_pde_unet(xs, ys, **common, **setting)
        else:
            model = fit_pde_unet(xs, ys, init=stage1, **common, **setting)
        t_train = time.process_time() - t0
        hist2 = model.info["history"]["stage2"]
        res = {"prior": model.info["prior"], "schedule": model.info["schedule"],
               "train_cpu_s": t_train,
               "final_terms": {k: float(np.mean(v[-20:])) for k, v in hist2["terms"].items()},
               "final_loss": float(np.mean(hist2["loss"][-20:]))}
        t0 = time.process_time()
        for split in ("in", "out"):
            ids, ims, gts = d[split]
            per = []
            for i, (im, gt) in enumerate(zip(ims, gts, strict=True)):
                pred = model.predict(im, channel_axis=ca)
                per.append(score(pred, gt))
                if job["figure"] and i in job["figure"].get(split, ()):
                    out["figure"].setdefault(f"{split}:{ids[i]}", {})[name] = pred
            res[split] = {m: [p[m] for p in per] for m in METRICS}
        res["eval_cpu_s"] = time.process_time() - t0
        out["variants"][name] = res
    out["wall_s"] = time.perf_counter() - t_wall
    out["cpu_s"] = time.process_time() - t_cpu
    return out


# ----------------------------------------------------------------------------------------------
# summary


def _ms(vals, digits: int = 3) -> str:
    v = np.asarray(vals, float)
    if v.size < 2:
        return f"{v.mean():.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def summarise(cells: list[dict]) -> tuple[dict, list[str]]:
    from scipy.stats import wilcoxon

    merged: dict = {}
    for c in cells:  # a (dataset, S, seed) may come as a main cell and a sweep cell
        j = c["job"]
        key = (j["dataset"], j["S"], j["seed"])
        if key not in merged:
            merged[key] = {"job": j, "variants": {}}
        merged[key]["variants"].update(c["variants"])
    groups: dict = {}
    for (ds, S, _), c in merged.items():
        groups.setdefault((ds, S), []).append(c)
    summary: dict = {}
    lines: list[str] = []
    for (ds, S), cs in sorted(groups.items()):
        cs = sorted(cs, key=lambda c: c["job"]["seed"])
        names = list(dict.fromkeys(n for c in cs for n in c["variants"]))
        all_cs = cs
        for split in ("in", "out"):
            for name in names:
                # a variant may exist for only some seeds (e.g. a one-seed sweep)
                cs = [c for c in all_cs if name in c["variants"] and "plain" in c["variants"]]
                if not cs:
                    continue
                row = {"dataset": ds, "S": S, "split": split, "variant": name,
                       "seeds": [c["job"]["seed"] for c in cs],
                       "n_images": len(cs[0]["variants"][name][split]["dice"])}
                for m in METRICS:
                    per_seed = [float(np.mean(c["variants"][name][split][m])) for c in cs]
                    row[m] = per_seed
                    if name != "plain":
                        base = [float(np.mean(c["variants"]["plain"][split][m])) for c in cs]
                        diff = np.asarray(per_seed) - np.asarray(base)
                        row[f"delta_{m}"] = diff.tolist()
                        better = diff < 0 if m == "hd95" else diff > 0
                        row[f"improved_{m}"] = int(better.sum())
                        a = np.concatenate([c["variants"][name][split][m] for c in cs])
                        b = np.concatenate([c["variants"]["plain"][split][m] for c in cs])
                        if np.any(a != b):
                            row[f"wilcoxon_p_{m}"] = float(wilcoxon(a, b).pvalue)
                        else:
                            row[f"wilcoxon_p_{m}"] = 1.0
                summary.setdefault("rows", []).append(row)
    return summary, lines


def markdown(summary: dict, meta: dict, tag: str = "pde_unet_shift") -> str:
    rows = summary.get("rows", [])
    split_name = {"in": "in domain", "out": "unseen domain"}
    out = [
        "# PDE-regularised U-Net vs plain U-Net (seed 001): low-sample regimes and domain shift",
        "",
        f"Regenerate: `{meta['command'].strip()}` (per-cell records: `{tag}_cells.jsonl`; "
        f"figure: `{tag}.png`; `--render-only` re-renders this file from them and "
        f"`{tag}_note.md`)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Seeds {meta['seeds']}; iterations {meta['iterations']} (stage I {meta['iterations'] // 2}"
        f" shared, stage II {meta['iterations'] - meta['iterations'] // 2} at lr × 0.1); "
        f"wall {meta['wall_s'] / 60:.1f} min, CPU {meta['cpu_s'] / 60:.1f} min "
        f"(idle 2-core estimate CPU/2 = {meta['cpu_s'] / 120:.1f} min; load average "
        f"{meta['load_start']:.1f}–{meta['load_end']:.1f}).  ",
        "Test sets: DSB2018 in domain = held-out grey fluorescence images, unseen = colour / "
        "brightfield images; WBC in domain = other Dataset-1 images, unseen = Dataset 2 "
        "(number of test images in brackets).",
        "",
        "Values: mean ± std over seeds of the per-seed mean over test images. "
        "Δ = pde − plain per seed (mean ± std); ↑ = seeds where pde is better; "
        "p = Wilcoxon signed-rank over all (image, seed) pairs. HD95 in pixels (lower is better).",
        "",
        "## Main comparison (two-stage, `allen-cahn` preset, λ_RD = λ_PF = 1)",
        "",
        "| data | S | test (images) | model | Dice | IoU | BF1 (2 px) | HD95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["variant"] not in MAIN:
            continue
        out.append(f"| {r['dataset']} | {r['S']} | {split_name[r['split']]} ({r['n_images']}) | "
                   f"{r['variant']} | " + " | ".join(_ms(r[m]) for m in METRICS) + " |")
        if r["variant"] == "pde":
            cells = []
            for m in METRICS:
                cells.append(f"{_ms(r['delta_' + m], 4)} "
                             f"(↑{r['improved_' + m]}/{len(r['seeds'])}, "
                             f"p={r['wilcoxon_p_' + m]:.2g})")
            out.append("| | | | **Δ** | " + " | ".join(cells) + " |")
    sweep = [r for r in rows if r["variant"] != "plain" and r["dataset"] == "dsb2018"
             and r["S"] == SWEEP_S]
    if any(r["variant"] in SWEEP for r in sweep):
        out += ["", f"## Weight sweep (DSB2018, S = {SWEEP_S}; Δ against plain, same seeds)", "",
                "| test (images) | variant | λ_RD | λ_PF | D | ε | Dice | ΔDice | ΔIoU | ΔBF1 | "
                "ΔHD95 |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sweep:
            p = meta["priors"].get(r["variant"], {})
            out.append(
                f"| {split_name[r['split']]} ({r['n_images']}) | {r['variant']} | "
                f"{p.get('lambda_rd', '')} | "
                f"{p.get('lambda_pf', '')} | {p.get('D', '')} | {p.get('eps', '')} | "
                f"{_ms(r['dice'])} | " + " | ".join(
                    f"{_ms(r['delta_' + m], 4)} (↑{r['improved_' + m]})" for m in METRICS) + " |")
    out += ["", meta.get("note", "")]
    return "\n".join(out) + "\n"


def figure(cells: list[dict], data_root: Path, n_test, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for c in sorted(cells, key=lambda c: (c["job"]["dataset"], c["job"]["S"])):
        if not c["figure"]:
            continue
        d = _dataset(c["job"]["dataset"], data_root, n_test)
        for key, preds in c["figure"].items():
            split, iid = key.split(":", 1)
            ids, ims, gts = d[split]
            k = ids.index(iid)
            panels.append((f"{c['job']['dataset']} S={c['job']['S']} "
                           f"{'in' if split == 'in' else 'unseen'}", ims[k], gts[k], preds))
    if not panels:
        return
    shown = [n for n in ("plain", "pde", "λ=10") if all(n in p[3] for p in panels)]
    ncol = 2 + len(shown)
    fig, axes = plt.subplots(len(panels), ncol, figsize=(2.75 * ncol, 2.7 * len(panels)))
    axes = np.atleast_2d(axes)
    for row, (title, im, gt, preds) in zip(axes, panels, strict=True):
        row[0].imshow(im, cmap="gray" if im.ndim == 2 else None)
        row[0].set_title(title, fontsize=8)
        row[1].imshow(gt, cmap="gray", vmin=0, vmax=1)
        row[1].set_title("ground truth", fontsize=8)
        for ax, name in zip(row[2:], shown, strict=True):
            ax.imshow(preds[name], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{name}: Dice {score(preds[name], gt)['dice']:.3f}", fontsize=8)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(_common.default_data()),
                    help="datasets folder (default: $PHYSEG_DATA, see "
                         "physeg.data.datasets.data_root)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--limit", type=int, default=40,
                    help="at most N test images per test set (default 40; 0 = all)")
    ap.add_argument("--n-test", type=int, default=None, help="alias of --limit")
    ap.add_argument("--sizes", default="5,10,20,50", help="DSB training sizes S")
    ap.add_argument("--wbc-sizes", default="10", help="WBC training sizes S ('' = none)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iterations", type=int, default=240, help="total per model (2 stages)")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--only-sweep", action="store_true",
                    help="only the sweep cells (DSB, S=10); with --split-variants one cell per "
                         "variant (plain comes from the main cells of the same seed)")
    ap.add_argument("--split-variants", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: S=5, one seed, 10 iterations, no sweep")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tag", default="pde_unet_shift")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the Markdown table from an existing <tag>.json (and note)")
    ap.add_argument("--merge", default="",
                    help="with --render-only: comma-separated tags whose per-cell logs are "
                         "combined into <tag> (runs split over several processes)")
    args = ap.parse_args(argv)
    if args.render_only and args.merge:
        out_dir = Path(args.out)
        cells, commands, wall, load = [], [], 0.0, []
        for t in args.merge.split(","):
            raw = out_dir / f"{t}_cells.jsonl"
            cells += [json.loads(x) for x in raw.read_text().splitlines() if x.strip()]
            js = out_dir / f"{t}.json"
            if js.exists():
                m = json.loads(js.read_text())["meta"]
                commands.append(m["command"])
                wall = max(wall, m["wall_s"])
                load += [m["load_start"], m["load_end"]]
            else:
                commands.append(f"(tag {t}: interrupted, cells from {raw.name})")
        meta = {"command": " ; ".join(commands),
                "seeds": sorted({c["job"]["seed"] for c in cells}),
                "iterations": args.iterations, "wall_s": wall,
                "cpu_s": sum(c["cpu_s"] for c in cells),
                "load_start": min(load) if load else float("nan"),
                "load_end": max(load) if load else float("nan"),
                "priors": {n: v["prior"] for c in cells for n, v in c["variants"].items()},
                "merged_tags": args.merge.split(",")}
        with open(out_dir / f"{args.tag}_cells.jsonl", "w") as f:
            for c in cells:
                f.write(json.dumps(c) + "\n")
        (out_dir / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "cells": cells}))
    if args.render_only:
        path = Path(args.out) / f"{args.tag}.json"
        if path.exists():
            saved = json.loads(path.read_text())
        else:  # interrupted run: rebuild from the per-cell log
            raw = Path(args.out) / f"{args.tag}_cells.jsonl"
            cells = [json.loads(x) for x in raw.read_text().splitlines() if x.strip()]
            meta = {"command": "(interrupted run, rendered from the per-cell log)",
                    "seeds": sorted({c["job"]["seed"] for c in cells}),
                    "iterations": args.iterations, "wall_s": float("nan"),
                    "cpu_s": sum(c["cpu_s"] for c in cells), "load_start": float("nan"),
                    "load_end": os.getloadavg()[0],
                    "n_images": {ds: {"in": "?", "out": "?"} for ds in ("dsb2018", "wbc")},
                    "priors": {n: v["prior"] for c in cells for n, v in c["variants"].items()}}
            saved = {"meta": meta, "cells": cells}
        meta = saved["meta"]
        note_path = Path(args.out) / f"{args.tag}_note.md"
        if note_path.exists():
            meta["note"] = note_path.read_text()
        summary, _ = summarise(saved["cells"])
        path.write_text(json.dumps({**saved, "meta": meta, "summary": summary}, indent=1))
        (Path(args.out) / f"{args.tag}.md").write_text(markdown(summary, meta, args.tag))
        return
    n_test = args.n_test if args.n_test is not None else args.limit
    n_test = None if n_test == 0 else n_test
    sizes = [int(s) for s in args.sizes.split(",") if s]
    wsizes = [int(s) for s in args.wbc_sizes.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.quick:
        sizes, wsizes, seeds, args.iterations, args.no_sweep = [5], [5], [0], 10, True
    data = Path(args.data)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_pick = {"in": (0, 1), "out": (0, 3)}
    jobs = []
    for S in sizes:
        for seed in seeds:
            fig = fig_pick if (seed == seeds[0] and S == (SWEEP_S if SWEEP_S in sizes
                                                             else sizes[0])) else None
            jobs.append(dict(dataset="dsb2018", S=S, seed=seed, variants=dict(MAIN), patch=96,
                             figure=fig))
    for S in wsizes:
        for seed in seeds:
            jobs.append(dict(dataset="wbc", S=S, seed=seed, variants=dict(MAIN), patch=96,
                             figure=fig_pick if seed == seeds[0] and S == wsizes[0] else None))
    # main cells first (largest S first), then the sweep cells (stage I recomputed: the same
    # seed gives the same stage I), so an interrupted run still has the main table
    jobs.sort(key=lambda j: -j["S"])
    if args.only_sweep and args.split_variants:
        jobs = [dict(dataset="dsb2018", S=SWEEP_S, seed=seed, variants={name: SWEEP[name]},
                     patch=96, figure=None)
                for seed in seeds for name in SWEEP]
    elif args.only_sweep:
        jobs = [dict(dataset="dsb2018", S=SWEEP_S, seed=seed, variants={**MAIN, **SWEEP},
                     patch=96, figure=fig_pick if seed == seeds[0] else None)
                for seed in seeds]
    elif SWEEP_S in sizes and not args.no_sweep:
        jobs += [dict(dataset="dsb2018", S=SWEEP_S, seed=seed, variants=dict(SWEEP), patch=96,
                      figure=None) for seed in seeds]
    for j in jobs:
        j.update(data=str(data), n_test=n_test, iterations=args.iterations)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    cells = []
    log = open(out_dir / f"{args.tag}.log", "w")

    def note(msg: str) -> None:
        line = f"[{time.perf_counter() - t0:7.1f}s] {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    note(f"{len(jobs)} cells, workers={args.workers}, load {load_start:.1f}")
    raw = open(out_dir / f"{args.tag}_cells.jsonl", "w")
    with ProcessPoolExecutor(max_workers=args.workers) as ex:
        futs = {ex.submit(run_cell, j): j for j in jobs}
        for f in as_completed(futs):
            c = f.result()
            cells.append(c)
            raw.write(json.dumps({k: v for k, v in c.items() if k != "figure"}) + "\n")
            raw.flush()
            j = c["job"]
            dice = {n: (np.mean(v["in"]["dice"]), np.mean(v["out"]["dice"]))
                    for n, v in c["variants"].items()}
            note(f"{j['dataset']} S={j['S']} seed={j['seed']} cpu {c['cpu_s']:.0f}s wall "
                 f"{c['wall_s']:.0f}s dice(in,out) " + ", ".join(
                     f"{n}={a:.3f}/{b:.3f}" for n, (a, b) in dice.items()))
    wall = time.perf_counter() - t0
    cpu = sum(c["cpu_s"] for c in cells)
    summary, _ = summarise(cells)
    n_images = {}
    for ds in ("dsb2018", "wbc"):
        d = _DATA.get((ds, n_test)) or _dataset(ds, data, n_test)
        n_images[ds] = {"in": len(d["in"][0]), "out": len(d["out"][0])}
    priors = {}
    for c in cells:
        for name, v in c["variants"].items():
            priors[name] = v["prior"]
    meta = {
        "command": "python benchmarks/pde_unet_shift.py " + " ".join(sys.argv[1:] if argv is None
                                                                      else argv),
        "seeds": seeds, "sizes": sizes, "wbc_sizes": wsizes, "iterations": args.iterations,
        "wall_s": wall, "cpu_s": cpu, "load_start": load_start, "load_end": os.getloadavg()[0],
        "n_images": n_images, "priors": priors, "workers": args.workers,
    }
    note_path = out_dir / f"{args.tag}_note.md"
    if note_path.exists():
        meta["note"] = note_path.read_text()
    per_cell = [{k: v for k, v in c.items() if k != "figure"} for c in cells]
    (out_dir / f"{args.tag}.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "cells": per_cell}, indent=1))
    (out_dir / f"{args.tag}.md").write_text(markdown(summary, meta, args.tag))
    figure(cells, data, n_test, out_dir / f"{args.tag}.png")
    note(f"done: wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min")


if __name__ == "__main__":
    main()
