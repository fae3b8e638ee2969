"""Few labels: physeg's learned fits against the same classifier unregularised and trained networks.

Regenerate (resumable: every (dataset, S, draw, method) cell is cached; a re-run computes only
the missing ones; ``--report`` rewrites the tables and the figure from the cache)::

    OMP_NUM_THREADS=1 nice python benchmarks/few_labels.py [--data DIR] [--methods M1,M2]
        [--datasets D1,D2] [--sizes 1,3,10] [--draws 3] [--n-test 8] [--net-cpu 30]
    python benchmarks/few_labels.py --report

Protocol:

* Data: the development parts of ``dsb2018``, ``ph2``, ``weizmann_horse`` (binary: object =
  ``mask > 0``) and ``wbc`` (3 classes: background, cytoplasm, nucleus), full resolution.
* Test images: a fixed subset of every dataset, every k-th image of the sorted ids
  (``--n-test`` images, default 8, to fit the CPU budget of a shared 2-core machine); they are
  never trained on. Training images: S = 1, 3, 10 drawn from the other images, three random
  draws (seeded permutations of the pool; the S = 1 and 3 sets are prefixes of the S = 10 one).
* Methods, all trained on the same S images of a draw:

  ``heat-fit``
      ``physeg.fit("heat", images, masks)`` (defaults: random forest on physeg's multiscale
      features, fidelity -log p, threshold dynamics with the heat-kernel perimeter, per-image
      colour mixtures ``adapt=1``); ``heat-fit-adapt0`` the same model with ``adapt=0``.
  ``forest``
      the same features and the same forest without regularisation: the pointwise argmax of
      the forest's posterior (what ``skimage.future.predict_segmenter`` returns for this
      classifier; the ilastik-style anchor).
  ``kinetic-fit``
      ``physeg.fit("kinetic", images, masks, likelihood="learned")``: the same learned
      posterior as the particles' feature. ``kinetic-cbo``: the CBO-only fit of theta on the
      image features (``physeg.fit("kinetic", images, masks)``, its defaults), S = 1 and 3,
      first draw only (each fit costs minutes).
  ``unet``, ``msnet``
      physeg's trainer with the shipped WBC recipe (``benchmarks/msnet_wbc.py``: Adam 1e-3,
      StepLR 0.8/200, Dice + CE, batch 4 of 128² patches, augmentation, 20 % validation when
      S >= 3) under a budget of ``--net-cpu`` CPU seconds of one torch thread (default 30).
  ``default``
      the no-label default ``physeg.segment(image, "heat")`` on the same test images.

* Scores per test image, then the mean: binary datasets plain Dice of label 1 against
  ``mask > 0`` (:func:`physeg.metrics.score_labels`'s rule); wbc the foreground mIoU (mean IoU
  of cytoplasm and nucleus) and, for comparison with the binary no-label default, the cell
  Dice of ``labels > 0``. Training CPU seconds (process time of this single-threaded
  process), inference seconds per image (wall).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import _common  # noqa: E402

_common.single_thread()

import numpy as np  # noqa: E402

DATASETS = ("dsb2018", "ph2", "weizmann_horse", "wbc")
METHODS = ("default", "heat-fit", "heat-fit-adapt0", "forest", "unet", "msnet", "kinetic-fit",
           "kinetic-cbo")
LEARNED = ("heat-fit", "heat-fit-adapt0", "forest")  # one fit, three read-outs
TRAIN_POOL_SEED = 16
CACHE = REPO / "out" / "few_labels_cache" / "records.jsonl"


# ---- data ----------------------------------------------------------------------------------


def rows(data: Path, name: str) -> list[dict]:
    with open(data / name / "manifest.csv", newline="") as fh:
        return sorted(csv.DictReader(fh), key=lambda r: r["id"])


def load(data: Path, name: str, row: dict) -> tuple[np.ndarray, np.ndarray]:
    from physeg.io import read_image, read_mask

    img = read_image(data / name / row["image"])
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    mask = read_mask(data / name / row["masks"].split(";")[0])
    return img, (mask if name == "wbc" else (mask > 0).astype(np.uint8))


def split(n: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """(test indices: every k-th of the sorted ids, the training pool: the others)."""
    stride = max(1, n // n_test)
    test = np.arange(0, n, stride)[:n_test]
    return test, np.setdiff1d(np.arange(n), test)


def draw(pool: np.ndarray, S: int, d: int, dataset: str) -> list[int]:
    seed = TRAIN_POOL_SEED + 1000 * d + DATASETS.index(dataset)
    return sorted(np.random.default_rng(seed).permutation(pool)[:S].tolist())


# ---- scores --------------------------------------------------------------------------------


def scores(pred: np.ndarray, truth: np.ndarray, dataset: str) -> dict[str, float]:
    from physeg.metrics import score_labels

    out = {}
    if dataset == "wbc":
        ious = []
        for k in (1, 2):
            a, b = pred == k, truth == k
            union = float((a | b).sum())
            ious.append(float((a & b).sum()) / union if union else 1.0)
        out["miou"] = float(np.mean(ious))
        out["dice_cell"] = float(score_labels(pred > 0, truth > 0, ("dice",))["scores"]["dice"])
    else:
        out["dice"] = float(score_labels(pred, truth > 0, ("dice",))["scores"]["dice"])
    return out


# ---- methods -------------------------------------------------------------------------------


def learned_readouts(model, img: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """heat-fit, heat-fit-adapt0 and the forest's argmax from one posterior (timed apart).

    heat-fit is the model's own pipeline (``segment_posterior`` with the fitted ``adapt`` and
    ``prior_weight``, or the no-label result where the fit chose ``follow_prior``, as
    ``model.predict``); heat-fit-adapt0 the same without the adaptation.
    """
    from physeg._validate import as_rng
    from physeg.families.heat._learned import prior_channels, segment_posterior

    t0 = time.perf_counter()
    extra = prior_channels(img, -1) if model.params.get("prior") == "default" else None
    logp, border, mix = model.likelihood.log_proba(img, -1, with_border=True, extra=extra)
    t_lik = time.perf_counter() - t0
    forest = np.argmax(logp, axis=-1).astype(np.uint8)
    p = model.params
    prior = None if extra is None else extra[..., 1]
    out = {"forest": (forest, t_lik)}
    if p.get("follow_prior"):  # predict's labels: the no-label mask, timed as it is made
        t0 = time.perf_counter()
        lab = model.predict(img, channel_axis=-1)
        t_follow = time.perf_counter() - t0
        return {**out, "heat-fit-adapt0": (lab, t_follow), "heat-fit": (lab, t_follow)}
    for name, a in (("heat-fit-adapt0", 0.0), ("heat-fit", p["adapt"])):
        t0 = time.perf_counter()
        lab = segment_posterior(logp, border, mix, prior, tau=p["tau"], lam=p["lam"], adapt=a,
                                prior_weight=p.get("prior_weight", 0.0), spacing=(1.0, 1.0),
                                rng=as_rng(0))
        out[name] = (lab.astype(np.uint8), t_lik + time.perf_counter() - t0)
    return out


def train(method: str, images: list, masks: list, args, seed: int):
    import physeg

    classes = int(max(int(m.max()) for m in masks)) + 1
    if method == "heat-fit":
        return physeg.fit("heat", images, masks, rng=seed)
    if method == "kinetic-fit":
        return physeg.fit("kinetic", images, masks, likelihood="learned", rng=seed)
    if method == "kinetic-cbo":
        return physeg.fit("kinetic", images, masks, classes=max(2, classes), rng=seed)
    if method in ("unet", "msnet"):
        import torch
        from msnet_wbc import ARCH

        from physeg.families.nets.train import fit_network

        torch.set_num_threads(1)
        return fit_network(
            method, method, images, masks, arch_config=dict(ARCH[method]), clip_grad=1.0,
            loss="dice_ce", patch=128, channel_axis=-1, ce_weight=1.0, intensity=0.2,
            colour=0.1, zoom=0.15, input_norm="image", step_size=200, gamma=0.8,
            max_cpu_time=args.net_cpu, ema=0.0, val_fraction=0.2 if len(images) >= 3 else 0.0,
            rotate=False, elastic=0.0, rng=seed, iterations=3000, batch_size=4, lr=1e-3,
            val_every=25, patience=30, max_time=4 * args.net_cpu, threads=1)
    raise ValueError(method)


def predict(method: str, model, img: np.ndarray) -> np.ndarray:
    if method in ("unet", "msnet"):
        return model.predict(img, channel_axis=-1, tta=False, keep_largest=False)
    if method.startswith("kinetic"):
        return model.predict(img, channel_axis=-1, rng=0)
    return model.predict(img, channel_axis=-1)


# ---- cache ---------------------------------------------------------------------------------


def read_cache(path: Path) -> dict[str, dict]:
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out[rec["key"]] = rec
    return out


def add(path: Path, rec: dict, cache: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    cache[rec["key"]] = rec


def key(dataset: str, method: str, S: int, d: int) -> str:
    return f"{dataset}|{method}|{S}|{d}"


# ---- run -----------------------------------------------------------------------------------


def run(args) -> None:
    data = Path(args.data)
    cache = read_cache(args.cache)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]
    for ds in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        R = rows(data, ds)
        test, pool = split(len(R), args.n_test)
        tests = {int(i): load(data, ds, R[i]) for i in test}
        if "default" in methods and key(ds, "default", 0, 0) not in cache:
            import physeg

            per, secs = [], []
            for i, (img, truth) in tests.items():
                t0 = time.perf_counter()
                lab = physeg.segment(img, "heat", channel_axis=-1, rng=0)
                secs.append(time.perf_counter() - t0)
                per.append({"id": R[i]["id"], **scores(lab, truth, ds)})
            add(args.cache, {"key": key(ds, "default", 0, 0), "dataset": ds, "method": "default",
                        "S": 0, "draw": 0, "per_image": per, "train_cpu_s": 0.0,
                        "infer_s": float(np.mean(secs))}, cache)
            print(ds, "default", _mean(per), flush=True)
        for S in sizes:
            for d in range(args.draws):
                train_idx = draw(pool, S, d, ds)
                todo = [m for m in methods if m != "default" and key(ds, m, S, d) not in cache]
                if "kinetic-cbo" in todo and (S > 1 or d > 0):
                    todo.remove("kinetic-cbo")
                todo = [m for m in todo if not (
                    (m in ("unet", "msnet") and (d >= args.net_draws or S not in args.net_sizes))
                    or (m == "kinetic-fit" and d >= args.kinetic_draws))]
                if any(m in LEARNED for m in todo):
                    todo = [m for m in todo if m not in LEARNED] + ["heat-fit"]
                if not todo:
                    continue
                pairs = [load(data, ds, R[i]) for i in train_idx]
                images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
                for m in todo:
                    seed = 100 * d + S
                    c0, t0 = time.process_time(), time.perf_counter()
                    try:
                        model = train(m, images, masks, args, seed)
                    except Exception as exc:  # noqa: BLE001 - a failed cell is recorded
                        print(ds, m, S, d, "FAILED", exc, flush=True)
                        add(args.cache, {"key": key(ds, m, S, d), "dataset": ds, "method": m,
                                    "S": S, "draw": d, "error": str(exc)}, cache)
                        continue
                    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                    outs: dict[str, list] = {}
                    for i, (img, truth) in tests.items():
                        if m == "heat-fit":
                            for name, (lab, s) in learned_readouts(model, img).items():
                                outs.setdefault(name, []).append(
                                    ({"id": R[i]["id"], **scores(lab, truth, ds)}, s))
                        else:
                            t1 = time.perf_counter()
                            lab = predict(m, model, img)
                            s = time.perf_counter() - t1
                            outs.setdefault(m, []).append(
                                ({"id": R[i]["id"], **scores(lab, truth, ds)}, s))
                    for name, res in outs.items():
                        per = [r for r, _ in res]
                        add(args.cache, {"key": key(ds, name, S, d), "dataset": ds, "method": name,
                                    "S": S, "draw": d, "train_ids": [R[i]["id"] for i in train_idx],
                                    "per_image": per, "train_cpu_s": cpu, "train_wall_s": wall,
                                    "infer_s": float(np.mean([s for _, s in res]))}, cache)
                        print(ds, name, f"S={S}", f"draw={d}", _mean(per),
                              f"train {cpu:.1f} CPU s", flush=True)


def _mean(per: list[dict]) -> dict[str, float]:
    return {k: round(float(np.mean([p[k] for p in per])), 4) for k in per[0] if k != "id"}


# ---- report --------------------------------------------------------------------------------


def summarise(cache: dict) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for rec in cache.values():
        if "error" in rec:
            continue
        groups.setdefault((rec["dataset"], rec["method"], rec["S"]), []).append(rec)
    out = []
    for (ds, m, S), recs in sorted(groups.items(), key=lambda kv: (
            DATASETS.index(kv[0][0]), kv[0][2], METHODS.index(kv[0][1]))):
        metric = "miou" if ds == "wbc" else "dice"
        per_draw = [float(np.mean([p[metric] for p in r["per_image"]])) for r in recs]
        row = {"dataset": ds, "method": m, "S": S, "draws": len(recs), "metric": metric,
               "score": float(np.mean(per_draw)), "score_std": float(np.std(per_draw)),
               "per_draw": per_draw,
               "train_cpu_s": float(np.mean([r["train_cpu_s"] for r in recs])),
               "train_cpu_s_max": float(np.max([r["train_cpu_s"] for r in recs])),
               "infer_s": float(np.mean([r["infer_s"] for r in recs]))}
        if ds == "wbc":
            row["dice_cell"] = float(np.mean([np.mean([p["dice_cell"] for p in r["per_image"]])
                                              for r in recs]))
        out.append(row)
    return out


def targets(summary: list[dict]) -> list[dict]:
    by = {(r["dataset"], r["method"], r["S"]): r for r in summary}
    out = []
    for ds in DATASETS:
        for S in (1, 3, 10):
            h = by.get((ds, "heat-fit", S))
            if h is None:
                continue
            f = by.get((ds, "forest", S))
            if f:
                out.append({"target": "heat-fit >= forest + 0.03", "dataset": ds, "S": S,
                            "value": h["score"] - f["score"],
                            "met": h["score"] >= f["score"] + 0.03})
            u = by.get((ds, "unet", S))
            if u and S in (1, 3):
                out.append({"target": "heat-fit >= U-Net", "dataset": ds, "S": S,
                            "value": h["score"] - u["score"], "met": h["score"] >= u["score"]})
            dft = by.get((ds, "default", 0))
            if dft and S == 1:
                hs = h.get("dice_cell", h["score"]) if ds == "wbc" else h["score"]
                ds_ = dft.get("dice_cell", dft["score"]) if ds == "wbc" else dft["score"]
                out.append({"target": "heat-fit S=1 >= no-label default" +
                            (" (cell Dice)" if ds == "wbc" else ""), "dataset": ds, "S": S,
                            # 1e-9: the mean over three draws of equal labels rounds
                            "value": hs - ds_, "met": hs >= ds_ - 1e-9})
            if S == 10:
                out.append({"target": "training <= 60 CPU s at S=10 (max over draws)",
                            "dataset": ds, "S": S, "value": h["train_cpu_s_max"],
                            "met": h["train_cpu_s_max"] <= 60})
    return out


def timing_targets(path: Path) -> list[dict]:
    """The prediction-time target from ``few_labels_timing.py``'s results (median wall s of a
    512² colour image, one thread), when that file exists."""
    if not path.is_file():
        return []
    res = json.loads(path.read_text())
    return [{"target": f"prediction <= 1 s, 512² colour, {c.get('classes', 2)} classes, "
                       f"adapt={float(a):g} (median s; few_labels_timing.md)",
             "dataset": c.get("dataset", "ph2"), "S": 3,
             "value": float(np.median(w)), "met": float(np.median(w)) <= 1.0}
            for c in res.get("cases", [res]) for a, w in c["wall_s"].items()]


def markdown(summary: list[dict], tg: list[dict], meta: dict) -> str:
    lines = ["# Few labels: learned fidelity + threshold dynamics vs unregularised forest and "
             "networks", "",
             f"Test images: every k-th development image, {meta['n_test']} per dataset, never "
             f"trained on; S training images from the rest, {meta['draws']} random draws; "
             f"networks {meta['net_cpu']:.0f} CPU s each (one thread). Score: plain Dice of label "
             "1 (binary) / foreground mIoU (wbc: cytoplasm, nucleus), mean over the draws (± "
             "std over draws; rows with 1 draw ran on the first draw only, for CPU time). "
             "`default` = the no-label `physeg.segment(image, 'heat')`. "
             f"Machine: {meta['machine']}.", "",
             "| dataset | S | method | draws | score | ± | wbc cell Dice | train CPU s | "
             "infer s/img |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        cell = f"{r['dice_cell']:.3f}" if "dice_cell" in r else ""
        lines.append(f"| {r['dataset']} | {r['S']} | {r['method']} | {r['draws']} | "
                     f"{r['score']:.3f} | "
                     f"{r['score_std']:.3f} | {cell} | {r['train_cpu_s']:.1f} | "
                     f"{r['infer_s']:.2f} |")
    lines += ["", "## Targets", "", "| target | dataset | S | value | met |",
              "|---|---|---|---|---|"]
    for t in tg:
        lines.append(f"| {t['target']} | {t['dataset']} | {t['S']} | {t['value']:+.3f} | "
                     f"{'yes' if t['met'] else 'no'} |")
    lines += ["", "![Score vs S](few_labels.png)", ""]
    lines += errors(meta["cache"], tg)
    return "\n".join(lines) + "\n"


def errors(cache: dict, tg: list[dict], n: int = 3) -> list[str]:
    """Where each unmet target loses: per test image, heat-fit minus the other row (mean over
    the draws they share), the ``n`` largest deficits."""
    other = {"heat-fit >= forest + 0.03": "forest", "heat-fit >= U-Net": "unet"}
    out = ["## Where the unmet targets lose (per test image, mean over draws)", ""]
    for t in tg:
        if t["met"] or "CPU" in t["target"] or "prediction" in t["target"]:
            continue
        ds, S = t["dataset"], t["S"]
        o = other.get(t["target"], "default")
        metric = "miou" if ds == "wbc" else "dice"
        if o == "default" and ds == "wbc":
            metric = "dice_cell"
        per: dict[str, list[float]] = {}
        for d in range(10):
            h = cache.get(key(ds, "heat-fit", S, d))
            r = cache.get(key(ds, o, 0 if o == "default" else S, 0 if o == "default" else d))
            if not h or not r or "per_image" not in h or "per_image" not in r:
                continue
            ref = {p["id"]: p[metric] for p in r["per_image"]}
            for p in h["per_image"]:
                per.setdefault(p["id"], []).append(p[metric] - ref[p["id"]])
        worst = sorted(per.items(), key=lambda kv: np.mean(kv[1]))[:n]
        out.append(f"- {t['target']}, {ds}, S={S} ({t['value']:+.3f}): " + ", ".join(
            f"{i[:12]} {np.mean(v):+.2f}" for i, v in worst))
    return out + [""]


def figure(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, ds in zip(axes, DATASETS, strict=True):
        for m in METHODS:
            rs = sorted((r for r in summary if r["dataset"] == ds and r["method"] == m),
                        key=lambda r: r["S"])
            if not rs:
                continue
            if m == "default":
                if ds != "wbc":  # the no-label default is binary: no fg mIoU to compare
                    ax.axhline(rs[0]["score"], ls="--", c="grey", label="no-label default")
                continue
            ax.errorbar([r["S"] for r in rs], [r["score"] for r in rs],
                        yerr=[r["score_std"] for r in rs], marker="o", capsize=3, label=m,
                        color=f"C{METHODS.index(m)}")
        ax.set_xscale("log")
        ax.set_xticks([1, 3, 10], ["1", "3", "10"])
        ax.set_title(ds)
        ax.set_xlabel("labelled training images S")
        ax.set_ylabel("fg mIoU" if ds == "wbc" else "Dice (label 1)")
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)


def report(args) -> None:
    import platform

    cache = read_cache(args.cache)
    summary = summarise(cache)
    tg = targets(summary) + timing_targets(Path(args.out) / "few_labels_timing.json")
    meta = {"n_test": args.n_test, "draws": args.draws, "net_cpu": args.net_cpu, "cache": cache,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                       "shared with other jobs"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = args.regenerate or (
        "OMP_NUM_THREADS=1 nice python benchmarks/few_labels.py "
        f"--n-test {args.n_test} --draws {args.draws} --net-cpu {args.net_cpu:g}"
        " (then `python benchmarks/few_labels.py --report`)")
    (out / "few_labels.json").write_text(json.dumps(
        {"meta": {**{k: v for k, v in meta.items() if k != "cache"}, "command": cmd},
         "summary": summary, "targets": tg,
         "records": sorted(cache.values(), key=lambda r: r["key"])}, indent=1))
    (out / "few_labels.md").write_text(_common.with_regenerate(markdown(summary, tg, meta), cmd))
    figure(summary, out / "few_labels.png")
    print((out / "few_labels.md").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(_common.default_data()))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default="default,heat-fit,unet,msnet,kinetic-fit,kinetic-cbo")
    ap.add_argument("--sizes", default="1,3,10")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--n-test", type=int, default=8)
    ap.add_argument("--net-cpu", type=float, default=30.0)
    ap.add_argument("--net-draws", type=int, default=3, help="draws with networks (first N)")
    ap.add_argument("--net-sizes", default="1,3,10", help="S values with networks")
    ap.add_argument("--kinetic-draws", type=int, default=3, help="draws with kinetic-fit")
    ap.add_argument("--out", default=str(_common.RESULTS))
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--regenerate", default=None,
                    help="the commands that made the cache, for the Markdown's Regenerate line")
    ap.add_argument("--cache", type=Path, default=CACHE,
                    help="records (JSON lines; default out/few_labels_cache, git-ignored)")
    args = ap.parse_args(argv)
    args.net_sizes = [int(v) for v in str(args.net_sizes).split(",") if v]
    if not args.report:
        run(args)
    report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
