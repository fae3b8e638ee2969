"""MSNet vs U-Net on WBC Dataset 1 (the MSNet paper's Table 2 protocol, our data split).

Measures test mIoU / mDSC / mAcc / mASD (and training time) of MSNet and U-Net trained on
S = 10, 30, 60 labelled images. Regenerate::

    python benchmarks/msnet_wbc.py [--data DIR] [--sizes 10,30,60] [--methods msnet,unet]
        [--max-cpu-time 1150] [--limit N] [--threads 1] [--holdout N] [--tag TAG]
    python benchmarks/msnet_wbc.py --merge TAG1,TAG2 \
        --notes benchmarks/results/msnet_wbc_notes.md

(the second merges result parts, one per row group, into one table, ``--tag`` default
``msnet_wbc``). The exact commands of the kept table are its ``Regenerate:`` line.

Protocol (seed paper §6.4, adapted to the development part of the data we have):

* Data: ``--data`` (default ``$PHYSEG_DATA/wbc``) = the 75 development images of WBC Dataset 1 (RGB, 88-120 px,
  masks 0 background / 1 cytoplasm / 2 nucleus). The paper used 300 images and 20 test images;
  we have 75, so for S = 10, 30, 60 training images the test set is the *rest* of the
  development set: 65, 45 and 15 images. One fixed-seed permutation (``--seed``) is used for
  every S, so the training sets are nested (the S = 10 images are among the S = 30 ones).
* Of the S labelled images, 20 % are held out for validation (model selection / early
  stopping): 8+2, 24+6, 48+12. The test images are never seen in training.
* Size policy: images are not resized. Training batches pad every image (zero = training mean,
  excluded from the loss) to 128², the next multiple of 2^(J-1) = 16 above 120; at test time
  the networks reflect-pad to a multiple of 16 and crop back, so metrics are on the original
  pixels.
* Both networks use the same trainer and recipe (defaults of this script, "v2"): Adam, lr 1e-3,
  the paper's StepLR ×0.8 / 200 iterations, gradient clip 1, batch 4 of whole images (padded
  to 128²), Dice + cross-entropy, per-image input standardisation, augmentation (flips, 90°
  turns, intensity 0.2, colour channel mixing 0.1, zoom ±15 %), validation every 25
  iterations with patience 30, at most 3000 iterations and a budget of ``--max-cpu-time``
  1150 CPU seconds of one torch thread (the "< 20 min on this CPU" target stated as CPU time,
  so that it does not depend on the load of the shared machine). The first version of this
  table ("v1", section ``msnet_wbc_v1`` under "Other runs" in ``msnet_wbc.md``) used the paper's soft Dice loss alone, 96² crops,
  dataset statistics, intensity 0.1 and no colour / zoom augmentation, with a wall-clock
  budget: reproduce it with ``--loss dice --patch 96 --input-norm dataset --intensity 0.1
  --colour 0 --zoom 0 --max-cpu-time 0`` plus the flags listed in that section.
* Recipe selection used ``--holdout 10``: 20 of the S = 30 training images for fitting and
  10 held-out training images for the metrics; the test split is not touched by it.
* Metrics per test image, then averaged over images (paper: "average values for the test
  images"): for each class k one-vs-rest, Acc_k = (TP+TN)/N, IoU_k = TP/(TP+FP+FN),
  DSC_k = 2TP/(2TP+FP+FN), ASD_k = mean symmetric distance between the inner boundaries (pixels;
  an image where one of the two boundaries is empty is left out of that class's ASD mean).
  mAcc averages all 3 classes (``mAcc_fg`` the foreground ones); mIoU / mDSC / mASD average
  the foreground classes (cytoplasm, nucleus), the spec's default (A.7) and the paper's
  convention (its Table 3 mIoU / mAcc are exactly the means of its Table 4 foreground rows,
  e.g. (0.8996 + 0.9001 + 0.7560) / 3 = 0.8519); ``mIoU_all`` (with background) and pixel
  accuracy are recorded too.
* The S = 30 MSNet checkpoint is written to ``models/msnet_wbc_s30.pt`` (our own weights).

Results (``--out``, default ``benchmarks/results``): ``msnet_wbc.json`` and ``msnet_wbc.md``
(``<tag>.json`` / ``.md`` for another ``--tag``). Rewriting them keeps what the files hold
besides this run's own entry: the json's ``other_runs`` and the Markdown's "## Other runs"
section (earlier runs merged by hand). ``msnet_wbc_notes.md`` is hand-written text appended
by ``--notes``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import _common  # noqa: E402

from physeg.data.datasets import FolderDataset, load_pairs, split  # noqa: E402
from physeg.families.nets._arch import count_parameters  # noqa: E402
from physeg.families.nets._model import keep_largest_object  # noqa: E402
from physeg.families.nets.train import fit_network  # noqa: E402

PATH_FLAGS = ("--out", "--model-out", "--save-all")
OTHER_RUNS = "\n## Other runs"  # the hand-merged section of msnet_wbc.md, kept on rewrite

PAPER = {  # seed Table 2 (WBC, 20 test images): U-Net, MSNet
    10: {"unet": (0.9147, 0.7199, 0.8056, 2.6567), "msnet": (0.9509, 0.8188, 0.8850, 0.7974)},
    30: {"unet": (0.9190, 0.7109, 0.7911, 2.3211), "msnet": (0.9801, 0.9144, 0.9537, 0.1861)},
    60: {"unet": (0.9395, 0.7734, 0.8444, 1.1533), "msnet": (0.9819, 0.9215, 0.9579, 0.1708)},
}

ARCH = {
    "msnet": {"widths": (8, 16, 32, 64, 128)},
    "unet": {"widths": (8, 16, 32, 64, 128)},
}


def class_metrics(pred: np.ndarray, truth: np.ndarray, k: int) -> dict[str, list[float]]:
    """Per-class one-vs-rest Acc, IoU, DSC, ASD of one image (lists of length k).

    IoU, DSC and ASD are :mod:`physeg.metrics` (both masks empty: IoU = DSC = 1, ASD = 0;
    one empty: ASD NaN, ``empty=nan``). Acc = (TP + TN) / N is the paper's one-vs-rest
    accuracy, which ``physeg.metrics.pixel_accuracy`` (per class: recall) is not, so it is
    computed here."""
    from physeg import metrics

    labels = list(range(k))
    iou = metrics.iou(pred, truth, labels=labels, average="none")
    dsc = metrics.dice(pred, truth, labels=labels, average="none")
    asd = metrics.average_surface_distance(pred, truth, labels=labels, average="none",
                                           empty=float("nan"))
    n = pred.size
    acc = [float(np.count_nonzero((pred == c) == (truth == c)) / n) for c in labels]
    return {"acc": acc, "iou": [float(iou[c]) for c in labels],
            "dsc": [float(dsc[c]) for c in labels], "asd": [float(asd[c]) for c in labels]}


def predict_all(model, images, tta: bool = False) -> tuple[list[np.ndarray], float]:
    """Labels of every image (one network pass each, or 8 with TTA) and seconds per image."""
    t0 = time.perf_counter()
    preds = [np.asarray(model.predict(im, channel_axis=-1, tta=tta)) for im in images]
    return preds, (time.perf_counter() - t0) / len(images)


def keep_largest_all(model, preds) -> tuple[list[np.ndarray], float]:
    """``predict(keep_largest=True)`` applied to labels already predicted (no second
    network pass): the same post-processing on the label values, background = the model's
    first class. Returns the labels and the seconds per image it took."""
    t0 = time.perf_counter()
    bg = model.preprocessing.classes[0]
    out = [keep_largest_object(p, background=bg) for p in preds]
    return out, (time.perf_counter() - t0) / len(preds)


def evaluate(preds, masks, infer: float) -> dict[str, float]:
    """Per-image metrics of predicted label maps, averaged (``infer``: seconds per image)."""
    per = []
    for p, m in zip(preds, masks, strict=True):
        per.append(class_metrics(np.asarray(p), np.asarray(m), 3))
    acc = np.array([d["acc"] for d in per])
    iou = np.array([d["iou"] for d in per])
    dsc = np.array([d["dsc"] for d in per])
    asd = np.array([d["asd"] for d in per])
    pix = np.mean([np.mean(np.asarray(p) == np.asarray(m))
                   for p, m in zip(preds, masks, strict=True)])
    return {
        "mAcc": float(acc.mean()),
        "mAcc_fg": float(acc[:, 1:].mean()),
        "mIoU": float(iou[:, 1:].mean()),
        "mDSC": float(dsc[:, 1:].mean()),
        "mASD": float(np.nanmean(np.nanmean(asd[:, 1:], axis=0))),
        "mIoU_all": float(iou.mean()),
        "pixel_acc": float(pix),
        "iou_per_class": iou.mean(axis=0).tolist(),
        "iou_per_image": iou.tolist(),
        "asd_nan_images": int(np.isnan(asd[:, 1:]).any(axis=1).sum()),
        "infer_ms_per_image": 1000 * infer,
        "n_test": len(preds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(_common.default_data("wbc")),
                    help="WBC Dataset 1 folder (default $PHYSEG_DATA/wbc)")
    ap.add_argument("--sizes", default="10,30,60")
    ap.add_argument("--methods", default="msnet,unet")
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--max-time", type=float, default=2400.0,
                    help="wall-clock safety limit (the budget is --max-cpu-time)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-every", type=int, default=25)
    ap.add_argument("--patience", type=int, default=30)
    ap.add_argument("--limit", type=int, default=None, help="use at most N test images")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clip-grad", type=float, default=1.0)
    ap.add_argument("--loss", default="dice_ce", choices=("dice", "dice_ce"))
    ap.add_argument("--ce-weight", type=float, default=1.0)
    ap.add_argument("--intensity", type=float, default=0.2)
    ap.add_argument("--colour", type=float, default=0.1)
    ap.add_argument("--zoom", type=float, default=0.15)
    ap.add_argument("--input-norm", default="image", choices=("dataset", "image"))
    ap.add_argument("--step-size", type=int, default=200)
    ap.add_argument("--rotate", action="store_true",
                    help="augmentation: rotations by arbitrary angles")
    ap.add_argument("--elastic", type=float, default=0.0,
                    help="augmentation: elastic deformation, displacement std in pixels")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="weight EMA decay (0 = off); validation and the model use the average")
    ap.add_argument("--val-fraction", type=float, default=0.2,
                    help="fraction of the S images held out for validation / checkpoint "
                         "selection (0 = train on all S and keep the last (EMA) weights)")
    ap.add_argument("--max-cpu-time", type=float, default=1150.0,
                    help="stop training after this many CPU seconds of the process (0 = no limit)")
    ap.add_argument("--save-all", default=None,
                    help="folder: save every run's model there as <tag>_S<S>_<method>.pt")
    ap.add_argument("--gamma", type=float, default=0.8)
    ap.add_argument("--holdout", type=int, default=0,
                    help="recipe selection: hold out N images of the S training pool and "
                         "report metrics on them instead of the test split (test unused)")
    ap.add_argument("--arch", default=None, help="JSON overrides of ARCH[method]")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--tag", default="msnet_wbc")
    ap.add_argument("--no-save-model", action="store_true")
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--model-out", default=str(REPO / "models" / "msnet_wbc_s30.pt"))
    ap.add_argument("--notes", default=None, help="file whose text is appended to the table")
    ap.add_argument("--merge", default=None,
                    help="comma-separated result tags to merge into --tag (no training)")
    args = ap.parse_args()
    if args.merge:
        runs, metas = [], []
        for tag in args.merge.split(","):
            d = _load_part(Path(args.out), tag, args.tag)
            for r in d["runs"]:  # older parts kept these in their meta only
                for key in ("batch_size", "patch", "lr"):
                    r.setdefault(key, d["meta"].get(key))
            runs += d["runs"]
            metas.append(d["meta"])
        runs.sort(key=lambda r: (r["S"], r["method"] != "msnet"))
        args.methods = ",".join(sorted({r["method"] for r in runs}))
        args.sizes = ",".join(str(s) for s in sorted({r["S"] for r in runs}))
        _write(Path(args.out), args, runs, merged=metas)
        return

    import torch

    torch.set_num_threads(args.threads)  # inference too: extra threads only wait on a busy CPU
    # images and masks paired by id, in manifest (else sorted-id) order; the same arrays and
    # order as the former nets.train.load_folder on the shared wbc folder
    ids, images, masks = load_pairs(FolderDataset(args.data))
    n = len(ids)
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for S in sizes:
        # one seeded permutation's prefix (sorted): the former split_indices(n, S, rng=seed)
        tr, te = (np.asarray(x, dtype=int) for x in split(range(n), S, rng=args.seed))
        if args.holdout:  # selection protocol: the test split is not touched
            a, b = (np.asarray(x, dtype=int)
                    for x in split(range(S), S - args.holdout, rng=args.seed + 1))
            tr, te = tr[a], tr[b]
        if args.limit:
            te = te[: args.limit]
        for meth in methods:
            print(f"== S={S} {meth}: train {len(tr)} (incl. validation), test {len(te)}",
                  flush=True)
            t0 = time.perf_counter()
            c0 = time.process_time()
            load0 = os.getloadavg()
            model = fit_network(
                meth, meth, [images[i] for i in tr], [masks[i] for i in tr],
                arch_config={**ARCH[meth], **json.loads(args.arch or "{}").get(meth, {})},
                clip_grad=args.clip_grad, loss=args.loss, patch=args.patch, channel_axis=-1,
                ce_weight=args.ce_weight, intensity=args.intensity, colour=args.colour,
                zoom=args.zoom, input_norm=args.input_norm, step_size=args.step_size,
                gamma=args.gamma, max_cpu_time=args.max_cpu_time or None,
                ema=args.ema, val_fraction=args.val_fraction, rotate=args.rotate,
                elastic=args.elastic,
                rng=args.seed,
                iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
                val_every=args.val_every, patience=args.patience, max_time=args.max_time,
                threads=args.threads, log=lambda s: print("   ", s, flush=True),
            )
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            load1 = os.getloadavg()
            test_masks = [masks[i] for i in te]
            plain, t_plain = predict_all(model, [images[i] for i in te])
            tta, t_tta = predict_all(model, [images[i] for i in te], tta=True)
            plain_pp, t_pp = keep_largest_all(model, plain)
            tta_pp, t_tta_pp = keep_largest_all(model, tta)
            res = evaluate(plain, test_masks, t_plain)
            for key, preds, secs in (("tta", tta, t_tta), ("pp", plain_pp, t_plain + t_pp),
                                     ("tta_pp", tta_pp, t_tta + t_tta_pp)):
                res[key] = {k: v for k, v in evaluate(preds, test_masks, secs).items()
                            if k != "iou_per_image"}
            res["test_ids"] = [ids[i] for i in te]
            h = model.info["history"]
            res.update(method=meth, S=S, train_seconds=h["train_seconds"], fit_wall_seconds=wall,
                       fit_cpu_seconds=cpu, train_cpu_seconds=h.get("train_cpu_seconds"),
                       loadavg_start=list(load0), loadavg_end=list(load1),
                       holdout=args.holdout,
                       iterations_run=h["iterations_run"], best_iteration=h["best_iteration"],
                       stop_reason=h["stop_reason"], best_val_dice=h["best_val_dice"],
                       parameters=count_parameters(model.net), n_train=model.info["n_train"],
                       batch_size=args.batch_size, patch=args.patch, lr=args.lr,
                       n_val=model.info["n_val"], arch=model.config,
                       paper=dict(zip(("mAcc", "mIoU", "mDSC", "mASD"), PAPER[S][meth],
                                      strict=True)))
            print(f"   -> IoU per class {np.round(res['iou_per_class'], 4).tolist()} "
                  f"mIoU {res['mIoU']:.4f} mDSC {res['mDSC']:.4f} mAcc {res['mAcc']:.4f} "
                  f"mASD {res['mASD']:.3f} ({wall:.0f}s wall, {cpu:.0f}s cpu); with TTA: "
                  f"IoU per class {np.round(res['tta']['iou_per_class'], 4).tolist()} "
                  f"mIoU {res['tta']['mIoU']:.4f}; keep-largest {res['pp']['mIoU']:.4f}; "
                  f"TTA + keep-largest {res['tta_pp']['mIoU']:.4f}", flush=True)
            if args.save_all:
                Path(args.save_all).mkdir(parents=True, exist_ok=True)
                model.save(Path(args.save_all) / f"{args.tag}_S{S}_{meth}.pt")
            runs.append(res)
            if meth == "msnet" and S == 30 and not args.no_save_model and not args.holdout:
                path = Path(args.model_out)
                model.info["benchmark"] = {k: res[k] for k in ("mIoU", "mDSC", "mAcc", "mASD",
                                                               "n_test")}
                model.save(path)
                print(f"   saved {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)
            _write(out, args, runs)


def _write(out: Path, args, runs, merged=None) -> None:
    if merged:
        meta = {"merged_from": merged}
        _write_files(out, args, runs, meta)
        return
    meta = {
        "data": args.data, "seed": args.seed, "max_time": args.max_time,
        "iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr,
        "argv": " ".join(sys.argv[1:]),
        "threads": args.threads, "limit": args.limit, "loss": args.loss,
        "clip_grad": args.clip_grad, "arch_override": args.arch, "patch": args.patch,
        "recipe": {k: getattr(args, k) for k in ("ce_weight", "intensity", "colour", "zoom",
                                                 "input_norm", "step_size", "gamma", "holdout",
                                                 "max_cpu_time", "ema", "val_fraction", "rotate",
                                                 "elastic")},
        "python": platform.python_version(),
        "machine": platform.machine(),
        "metric_note": "mIoU/mDSC/mASD over foreground classes (cytoplasm, nucleus); mAcc "
                       "one-vs-rest over all 3 classes; per image, then averaged",
    }
    _write_files(out, args, runs, meta)


def _load_part(out: Path, tag: str, into: str) -> dict:
    """Result part ``tag`` for ``--merge``: ``<out>/<tag>.json``, else the entry ``tag`` of
    ``other_runs`` in ``<out>/<into>.json`` (where merged parts are kept)."""
    path = out / f"{tag}.json"
    if path.exists():
        return json.loads(path.read_text())
    merged = out / f"{into}.json"
    other = json.loads(merged.read_text()).get("other_runs", {}) if merged.exists() else {}
    if tag not in other:
        raise SystemExit(f"no result part {tag!r}: neither {path} nor other_runs of {merged}")
    return other[tag]


def _regenerate(meta) -> str:
    """The ``Regenerate:`` line: the run's command, or each part's command and the merge."""
    def cmd(argv: list[str]) -> str:  # without the output paths of the time (--out etc.)
        keep = [a for i, a in enumerate(argv) if a not in PATH_FLAGS
                and (i == 0 or argv[i - 1] not in PATH_FLAGS)]
        return "`" + " ".join(["python benchmarks/msnet_wbc.py", *keep]) + "`"

    if "merged_from" not in meta:
        return f"Regenerate: {cmd(meta.get('argv', '').split())}"
    return ("Regenerate: one command per row group ("
            + "; ".join(cmd(m.get("argv", "").split()) for m in meta["merged_from"])
            + f"), then {cmd(sys.argv[1:])} merges them (output paths --out / --model-out / "
            "--save-all of the time left out)")


def _write_files(out: Path, args, runs, meta) -> None:
    pj, pm = out / f"{args.tag}.json", out / f"{args.tag}.md"
    # keep what the files hold besides this run's entry (other_runs, the "Other runs" section)
    kept = json.loads(pj.read_text()) if pj.exists() else {}
    kept.update(meta=meta, runs=runs)
    pj.write_text(json.dumps(kept, indent=2))
    old_md = pm.read_text() if pm.exists() else ""
    other = old_md[old_md.index(OTHER_RUNS) + 1:] if OTHER_RUNS in old_md else ""
    m0 = meta.get("merged_from", [meta])[0]
    lines = [
        "# MSNet vs U-Net on WBC Dataset 1 (dev set, our split)", "",
        _regenerate(meta), "",
        "Commands: " + "; ".join(
            f"`python benchmarks/msnet_wbc.py {m.get('argv', '')}`"
            for m in meta.get("merged_from", [meta])), "",
        f"Training: loss {m0.get('loss')}, grad clip {m0.get('clip_grad')}, at most "
        f"{m0.get('iterations')} iterations or {m0.get('max_time')} s wall"
        + (f" or {m0['recipe']['max_cpu_time']} CPU s" if m0.get("recipe", {}).get("max_cpu_time")
           else "")
        + f", {m0.get('threads')} torch thread(s); batch, patch and lr per row"
        + (f"; recipe {json.dumps(m0['recipe'])}" if m0.get("recipe") else "") + ".", "",
        "Test = the rest of the 75 development images (65 / 45 / 15 for S = 10 / 30 / 60); the "
        "paper used 20 test images of 300. "
        f"{100 * m0.get('recipe', {}).get('val_fraction', 0.2):.0f} % of the S images are used "
        "for validation (0 %: no validation, the last EMA weights are kept). "
        "Paper numbers are its Table 2 (different split and input size, so compare trends).", "",
        "| S | method | params | mAcc | mIoU | mDSC | mASD | mIoU (all 3) | IoU bg/cyto/nuc "
        "| mIoU TTA | mIoU (all 3) TTA | mIoU PP | mIoU TTA+PP | mAcc fg | train s wall "
        "| train s CPU | load avg start→end "
        "| iters | batch×patch², lr | stop | infer ms/img | paper mAcc | paper mIoU "
        "| paper mDSC | paper mASD |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        "---|---|---|---|",
    ]

    def fmt(v, spec):
        return "–" if v is None else format(v, spec)

    for r in runs:
        p = r["paper"]
        tta = r.get("tta", {})
        cpu = r.get("train_cpu_seconds")
        la, lb = r.get("loadavg_start"), r.get("loadavg_end")
        load = "–" if la is None else f"{la[0]:.1f}→{lb[0]:.1f}"
        lines.append(
            f"| {r['S']} | {r['method']} | {r['parameters']:,} | {r['mAcc']:.4f} | "
            f"{r['mIoU']:.4f} | {r['mDSC']:.4f} | {r['mASD']:.3f} | {r['mIoU_all']:.4f} | "
            f"{'/'.join(f'{v:.3f}' for v in r['iou_per_class'])} | "
            f"{fmt(tta.get('mIoU'), '.4f')} | {fmt(tta.get('mIoU_all'), '.4f')} | "
            f"{fmt(r.get('pp', {}).get('mIoU'), '.4f')} | "
            f"{fmt(r.get('tta_pp', {}).get('mIoU'), '.4f')} | {fmt(r.get('mAcc_fg'), '.4f')} | "
            f"{r['train_seconds']:.0f} | {fmt(cpu, '.0f')} | {load} | {r['iterations_run']} | "
            f"{r.get('batch_size', '?')}×{r.get('patch', '?')}², {r.get('lr', '?')} | "
            f"{r['stop_reason']} | "
            f"{r['infer_ms_per_image']:.0f} | {p['mAcc']:.4f} | {p['mIoU']:.4f} | "
            f"{p['mDSC']:.4f} | {p['mASD']:.4f} |"
        )
    lines += ["", "Timings are on a 2-core CPU shared with other jobs (1 torch thread): "
              "compare ratios within this table, not absolute seconds. 'train s CPU' is the "
              "process's CPU time during training (1 thread), the load-independent budget; "
              "'load avg' is the 1-minute load average of the machine when the run started "
              "and ended. mIoU / mDSC / mASD average the foreground classes (cytoplasm, "
              "nucleus); 'mIoU (all 3)' also averages background. The paper's prose calls K "
              "'the total number of classes', but its Table 3 mIoU and mAcc are exactly the "
              "means of the three foreground-muscle rows of its Table 4 (0.8996, 0.9001, "
              "0.7560 -> 0.8519), so the foreground mean is the paper's convention. TTA = "
              "the same model with "
              "8-fold flip / 90° test-time augmentation (reported beside, not the headline). "
              "PP = keep-largest-object post-processing (`predict(keep_largest=True)`: the "
              "largest connected cell, holes filled). mAcc fg = mAcc over the foreground "
              "classes only (the paper's Table 3/4 mIoU and mAcc are means over the foreground "
              "classes: its per-class rows average exactly to them)."]
    if getattr(args, "notes", None):
        lines += ["", Path(args.notes).read_text().strip()]
    if other:
        lines += ["", other.rstrip()]
    pm.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
