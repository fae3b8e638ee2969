"""DynaSeg on the BSDS500 development test images: mIoU protocols and seconds per image.

Runs ``physeg.families.dynaseg.segment_dynaseg`` for the variants fixed (mu = 5, Kim et al.),
FSF (alpha = 15) and SCF (alpha = 50), at the named settings (the "published" recipe and
the "fast" preset, plus ablations that each undo one speed-up), on the rows of
``manifest.csv`` with ``orig_split == test`` (50 images in the development part), and
scores every prediction against all its annotators with ``physeg.metrics``:

* ``hungarian``: the seed paper's protocols (All / Fine / Coarse / Mean) with one-to-one
  Hungarian matching per gt map (a gt segment left without a cluster scores 0);
* ``best_match``: the official DynaSeg script's score (``tools/calculate_mIOU.py``): for
  every gt segment the best IoU over predicted segments (many-to-one), labelled as such.

Both are reported segment-weighted over the dataset (every gt segment of every image is one
entry, as the official script does; the headline numbers) and image-weighted (mean of the
per-image numbers).

Results: every finished image is stored at once as a record of run ``--tag`` in
``benchmarks/results/dynaseg_summary.json`` and ``dynaseg_summary.md`` (every run's table,
then the hand-written ``dynaseg_notes.md``) is re-rendered from it, so an interrupted run still
leaves numbers; rerunning with the same tag skips (image, variant, setting) triples already
done. ``--report`` only re-renders the Markdown. The BSDS500 folder is ``--data`` (default
``$PHYSEG_DATA/bsds500``).

Regenerate (the exact command of every kept run is listed in ``dynaseg_summary.md``)::

    python benchmarks/dynaseg_bsds.py --limit 5 --variants fsf --settings fast
    python benchmarks/dynaseg_bsds.py --variants fixed,fsf,scf --settings fast --tag fast50
    python benchmarks/dynaseg_bsds.py --limit 2 --variants fsf --settings published --tag pub
    python benchmarks/dynaseg_bsds.py --report

Timings: wall seconds and process CPU seconds per image; the machine is shared, so the
script also records the 1-minute load average before every image.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import _common  # noqa: E402

from physeg import metrics  # noqa: E402
from physeg.families.dynaseg import segment_dynaseg, split_components  # noqa: E402

#: name -> keyword arguments of segment_dynaseg (threads is added from --threads).
SETTINGS: dict[str, dict] = {
    # The official BSD/VOC script: full resolution, M=2, p=q=100, T=1000, stop at 3 labels.
    "published": dict(preset="published"),
    # Scale 0.5, 64 channels, T = 60, stop when q' is stable for 10 its (default until
    # issue 15).
    "fast": dict(preset="fast"),
    "anchor": {},  # settings of the anchor methods are in VARIANTS
    # Ablations: each undoes (or adds) one thing relative to "fast".
    "fast-scale1": dict(preset="fast", scale=1.0),
    "fast-ch100": dict(preset="fast", channels=100),
    "fast-nopatience": dict(preset="fast", patience=0),
    "fast-T300": dict(preset="fast", patience=0, max_iter=300),
    "fast-scale0.35": dict(preset="fast", scale=0.35),
    "fast-silh": dict(preset="fast", silhouette=True),
    "fast-m3": dict(preset="fast", n_conv=3),
    "fast-fullout": dict(preset="fast", final="full"),
    # Region output tuned on train/val images (see --trace / --score-trace below).
    "regions": dict(preset="regions"),
    "regions-scale1": dict(preset="regions", scale=1.0),
    "regions-nomerge": dict(preset="regions", merge=0.0),
    "regions-fullout": dict(preset="regions", final="full"),  # = "regions" since v2
    "regions-upsample": dict(preset="regions", final="upsample"),  # "regions" before v2
    "regions-ch100": dict(preset="regions", channels=100),
    "regions-m3": dict(preset="regions", n_conv=3),
    "regions-merge8": dict(preset="regions", merge=8.0),
    # v3: superpixels merged by colour + the networks' co-association boundary
    "superpixels": dict(preset="superpixels"),
    # the library's default (no preset named): "superpixels" since issue 15
    "default": {},
    "superpixels-runs1": dict(preset="superpixels", runs=1),
    "superpixels-runs4": dict(preset="superpixels", runs=4),
}
VARIANTS = {"fixed": dict(variant="fixed", mu=5.0), "fsf": dict(variant="fsf", alpha=15.0),
            "scf": dict(variant="scf", alpha=50.0),
            # anchor, not DynaSeg: scikit-image's graph-based segmentation (Felzenszwalb &
            # Huttenlocher 2004; the paper's "Graph-based Segmentation" row, parameters
            # unknown there); run with --settings anchor
            "felzenszwalb": dict(scale=100.0, sigma=0.8, min_size=50),
            # anchor: k-means (k = 5) of the RGB pixel values, the paper's "k-means
            # clustering" row (its k is not given); checks what that row measured: the
            # cluster map vs. its connected regions ('+CC' columns)
            "kmeans5": dict(k=5),
            # ablations of preset "superpixels" without the network: its superpixels alone
            # (Felzenszwalb with the preset's parameters), and those merged by colour only
            # (greedy, threshold 5 L*a*b* units, the best colour-only merge on train/val)
            "felz200": dict(scale=200.0, sigma=0.5, min_size=20),
            "felz200_colourmerge": dict(scale=200.0, sigma=0.5, min_size=20)}
ANCHORS = {"felzenszwalb", "kmeans5", "felz200", "felz200_colourmerge"}
PAPER = {  # Table 1 of the paper (BSD500 test, 200 images; official best-match script)
    "fixed": dict(all=0.305, fine=0.259, coarse=0.374, mean=0.313),
    "fsf": dict(all=0.349, fine=0.307, coarse=0.420, mean=0.359),
    "scf": dict(all=0.330, fine=0.290, coarse=0.407, mean=0.342),
}


def read_rows(data: Path, limit: int | None, split: str = "test") -> list[dict]:
    """Rows of ``manifest.csv``: ``split="test"`` = the 50 dev test images sorted by id;
    ``split="trainval"`` = the train + val images in a fixed random order (seed 0), the
    only images used for tuning."""
    with open(data / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if split == "test":
        rows = sorted((r for r in rows if r["orig_split"] == "test"), key=lambda r: r["id"])
    else:
        rows = sorted((r for r in rows if r["orig_split"] in ("train", "val")),
                      key=lambda r: r["id"])
        perm = np.random.default_rng(0).permutation(len(rows))
        rows = [rows[i] for i in perm]
    return rows[:limit] if limit else rows


def trace(args, rows: list[dict], kw: dict) -> None:
    """Tuning helper: train with no stop rule for ``max_iter`` iterations and save the
    (upsampled, argmax) labels of every iteration, so that stop rules and post-processing
    can be scored afterwards without retraining (``--score-trace``). Labels of iteration t
    come from the forward pass before step t (the published code stops after that step)."""
    import torch
    from torch.nn import functional as F

    args.trace.mkdir(parents=True, exist_ok=True)
    for row in rows:
        out = args.trace / f"{row['id']}.npz"
        if out.exists():
            continue
        img, _ = load(args.data, row)
        stack = []

        def cb(it, q, mu, loss, resp, size=img.shape[:2], stack=stack):
            up = F.interpolate(resp, size=size, mode="bilinear", align_corners=False)
            stack.append(up.argmax(1)[0].numpy().astype(np.uint8))

        torch.set_num_threads(args.threads)
        c0 = time.process_time()
        _, info = segment_dynaseg(img, channel_axis=-1, rng=args.seed, return_info=True,
                                  callback=cb, threads=args.threads,
                                  **{**kw, "patience": 0, "min_labels": 1})
        np.savez_compressed(out, labels=np.stack(stack), q=np.array(info["n_labels"]),
                            cpu=time.process_time() - c0)
        print(row["id"], info["n_labels"][::5], flush=True)


def score_trace(args, rows: list[dict]) -> dict:
    """Score saved traces: stop rule (iteration t or first t with q' <= K) x merge
    threshold, region output with min_size 20 (segment-weighted H / BM All)."""
    from skimage.color import rgb2lab

    from physeg.families.dynaseg import merge_similar_regions
    from physeg.metrics._matching import bsds_segment_lists

    rules = [x.strip() for x in args.rules.split(",")]
    merges = [x.strip() for x in args.merges.split(",")]  # "10" or "10r60" (min_regions)
    acc: dict = {}
    n_img = 0
    for row in rows:
        f = args.score_trace / f"{row['id']}.npz"
        if not f.exists():
            continue
        n_img += 1
        img, gts = load(args.data, row)
        lab_img = rgb2lab(img)
        z = np.load(f)
        stack, q = z["labels"], z["q"]
        for rule in rules:
            if rule.startswith("q"):
                hit = np.nonzero(q <= int(rule[1:]))[0]
                t = int(hit[0]) if hit.size else len(q) - 1
            else:
                t = min(int(rule), len(q) - 1)
            reg0 = split_components(stack[t], min_size=20)
            for m in merges:
                thr, _, rmin = m.partition("r")
                reg = (merge_similar_regions(reg0, lab_img, threshold=float(thr),
                                             min_regions=int(rmin or 0))
                       if float(thr) > 0 else reg0)
                a = acc.setdefault(f"{rule} merge {m}", {"H": [], "BM": [], "regions": [],
                                                        "t": []})
                a["H"].append(bsds_segment_lists(reg, gts, "hungarian")["all"])
                a["BM"].append(bsds_segment_lists(reg, gts, "best_match")["all"])
                a["regions"].append(int(reg.max()) + 1)
                a["t"].append(t + 1)
    table = {k: {"H_all": float(np.concatenate(v["H"]).mean()),
                 "BM_all": float(np.concatenate(v["BM"]).mean()),
                 "regions": float(np.mean(v["regions"])), "iterations": float(np.mean(v["t"])),
                 "n_images": n_img} for k, v in acc.items()}
    return table


def load(data: Path, row: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    from physeg.io import read_image, read_mask

    img = read_image(data / row["image"])
    gts = [read_mask(data / p) for p in row["masks"].split(";")]
    return img, gts


def _kmeans_labels(img: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means of the pixel colours in [0, 1]: centres fitted on 3000 random pixels
    (k-means++ seeding, Lloyd), every pixel assigned to its nearest centre."""
    from physeg._kmeans import kmeans  # the former physeg.families.dynaseg.kmeans (same labels)

    x = img.reshape(-1, img.shape[-1]).astype(np.float64) / 255.0
    gen = np.random.default_rng(seed)
    sub = x[gen.choice(len(x), min(3000, len(x)), replace=False)]
    lab, _ = kmeans(sub, k, rng=seed)
    cent = np.stack([sub[lab == j].mean(0) for j in range(k) if (lab == j).any()])
    d2 = (x * x).sum(1)[:, None] - 2 * x @ cent.T + (cent * cent).sum(1)[None]
    return d2.argmin(1).reshape(img.shape[:2]).astype(np.int32)


def seg_counts(gts: list[np.ndarray]) -> dict[str, int]:
    n = [int(np.unique(g).size) for g in gts]
    return {"all": int(sum(n)), "fine": int(max(n)), "coarse": int(min(n))}


def summarise(records: list[dict]) -> dict:
    out: dict = {}
    for rec in records:
        out.setdefault((rec["variant"], rec["setting"]), []).append(rec)
    table = {}
    for (var, setting), recs in sorted(out.items()):
        entry: dict = {"variant": var, "setting": setting, "n_images": len(recs)}
        for score in ("hungarian", "best_match", "hungarian_cc", "best_match_cc"):
            for key in ("all", "fine", "coarse"):
                w = np.array([r["n_segments"][key] for r in recs], float)
                v = np.array([r[score][key] for r in recs], float)
                entry[f"{score}_{key}"] = float((w * v).sum() / w.sum())
                entry[f"{score}_{key}_imgw"] = float(v.mean())
            for suffix in ("", "_imgw"):
                entry[f"{score}_mean{suffix}"] = float(np.mean(
                    [entry[f"{score}_{k}{suffix}"] for k in ("all", "fine", "coarse")]))
        for key in ("wall_s", "cpu_s", "iterations", "n_segments_pred", "n_regions_cc",
                    "load1"):
            entry[f"{key}_mean"] = float(np.mean([r[key] for r in recs]))
        entry["wall_s_median"] = float(np.median([r["wall_s"] for r in recs]))
        entry["stop_reasons"] = {s: sum(r["stop_reason"] == s for r in recs)
                                 for s in sorted({r["stop_reason"] for r in recs})}
        table[f"{var}/{setting}"] = entry
    return table


def run_table(table: dict, meta: dict) -> str:
    """Markdown table of one run (printed at the end of a run; the stored file is
    ``dynaseg_summary.md``)."""
    lines = [
        f"# DynaSeg on BSDS500 dev test images ({meta['tag']})", "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}; torch threads {meta['threads']}; shared CPU, "
        "mean 1-min load average before each image in the table.", "",
        "mIoU, segment-weighted over the dataset (as the official script). H = one-to-one "
        "Hungarian matching per gt map (the seed's protocol); BM = official DynaSeg code's "
        "best-match-per-segment score (many-to-one).", "",
        "| variant | setting | segments scored | n | H All | H Fine | H Coarse | H Mean | "
        "BM All | BM Fine | BM Coarse | BM Mean | H All (img-w) | wall s/img | CPU s/img | "
        "iters | segs | load |",
        "|" + "---|" * 18,
    ]
    for e in table.values():
        for sfx, what, segs in (("", "clusters", "n_segments_pred"),
                                ("_cc", f"+CC (min {meta.get('min_size')} px)",
                                 "n_regions_cc")):
            lines.append(
                f"| {e['variant']} | {e['setting']} | {what} | {e['n_images']} | "
                + " | ".join(f"{e[f'hungarian{sfx}_{k}']:.3f}"
                             for k in ("all", "fine", "coarse", "mean"))
                + " | "
                + " | ".join(f"{e[f'best_match{sfx}_{k}']:.3f}"
                             for k in ("all", "fine", "coarse", "mean"))
                + f" | {e[f'hungarian{sfx}_all_imgw']:.3f} | {e['wall_s_mean']:.1f} | "
                f"{e['cpu_s_mean']:.1f} | {e['iterations_mean']:.0f} | {e[segs + '_mean']:.1f} | "
                f"{e['load1_mean']:.1f} |"
            )
    lines += ["", "Paper, Table 1 (200 BSD500 test images, official best-match script): "
              + "; ".join(f"{v} All {p['all']:.3f} / Fine {p['fine']:.3f} / Coarse "
                          f"{p['coarse']:.3f} / Mean {p['mean']:.3f}" for v, p in PAPER.items())]
    return "\n".join(lines) + "\n"


SUMMARY = "dynaseg_summary.json"


def load_runs(out: Path) -> dict:
    """``dynaseg_summary.json``: {"runs": {tag: {"commands", "meta", "records"}},
    "tuning": {tag: ...}}."""
    path = out / SUMMARY
    return json.loads(path.read_text()) if path.exists() else {"runs": {}, "tuning": {}}


def save_runs(out: Path, stored: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).write_text(json.dumps(stored, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_data_argument(ap, "bsds500")
    ap.add_argument("--limit", type=int, default=None, help="first N test images (by id)")
    ap.add_argument("--variants", default="fixed,fsf,scf")
    ap.add_argument("--settings", default="fast", help=f"comma list of {list(SETTINGS)}")
    ap.add_argument("--max-iter", type=int, default=None,
                    help="override max_iter for every setting (a cap; stated in the output)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="run")
    ap.add_argument("--min-size", type=int, default=50,
                    help="min_size of the connected-region post-processing scored as '+CC'")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--save-labels", type=Path, default=None,
                    help="folder for the raw cluster label maps (<id>_<variant>_<setting>.npz);"
                         " keep it outside the repository")
    ap.add_argument("--split", default="test", choices=("test", "trainval"),
                    help="test: the 50 dev test images; trainval: train+val images in a "
                         "seeded random order (tuning only)")
    ap.add_argument("--trace", type=Path, default=None,
                    help="tuning: save every iteration's labels of the first --settings entry "
                         "(no stop rule, --max-iter iterations) to this folder (outside the repo)")
    ap.add_argument("--score-trace", type=Path, default=None,
                    help="tuning: score the traces in this folder (stored under 'tuning' "
                         "in results/dynaseg_summary.json, table printed)")
    ap.add_argument("--rules", default="6,9,14,q24,q16,q12,59",
                    help="stop rules for --score-trace: iteration numbers or qK (q' <= K)")
    ap.add_argument("--merges", default="0,8,10,12", help="merge thresholds for --score-trace")
    ap.add_argument("--report", action="store_true",
                    help="only re-render dynaseg_summary.md from dynaseg_summary.json")
    args = ap.parse_args(argv)

    meta_cmd = "python benchmarks/dynaseg_bsds.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    if args.report:
        print(report(args.out))
        return 0
    if not (args.data / "manifest.csv").is_file():
        print(f"no BSDS500 manifest in {args.data}; pass --data", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}; choose from {list(VARIANTS)}")
    for s in settings:
        if s not in SETTINGS:
            ap.error(f"unknown setting {s!r}; choose from {list(SETTINGS)}")
    stored = load_runs(args.out)
    meta = {
        "tag": args.tag, "command": meta_cmd,
        "machine": f"{os.cpu_count()} CPUs", "threads": args.threads,
        "max_iter_override": args.max_iter, "seed": args.seed, "min_size": args.min_size,
        "settings": {s: SETTINGS[s] for s in settings},
    }
    rows = read_rows(args.data, args.limit, args.split)
    if args.trace is not None:
        kw = {**SETTINGS[settings[0]], **VARIANTS[variants[0]]}
        if args.max_iter is not None:
            kw["max_iter"] = args.max_iter
        trace(args, rows, kw)
        return 0
    if args.score_trace is not None:
        table = score_trace(args, rows)
        stored.setdefault("tuning", {})[args.tag] = {"meta": meta, "table": table}
        save_runs(args.out, stored)
        lines = [f"# DynaSeg tuning on BSDS500 train/val images ({args.tag})", "",
                 f"Command: `{meta['command']}`", "",
                 "Region output (connected components, min 20 px) after the stop rule, then "
                 "the colour merge; segment-weighted All scores.", "",
                 "| stop rule, merge | n | iterations | regions | H All | BM All |",
                 "|---|---|---|---|---|---|"]
        for k, e in table.items():
            lines.append(f"| {k} | {e['n_images']} | {e['iterations']:.1f} | "
                         f"{e['regions']:.0f} | {e['H_all']:.3f} | {e['BM_all']:.3f} |")
        print("\n".join(lines))
        return 0
    run = stored["runs"].setdefault(args.tag, {"commands": [], "meta": meta, "records": []})
    if meta_cmd not in run["commands"]:
        run["commands"].append(meta_cmd)
    records = run["records"]
    done = {(r["id"], r["variant"], r["setting"]) for r in records}
    for row in rows:
        img, gts = load(args.data, row)
        for setting in settings:
            for var in variants:
                if (row["id"], var, setting) in done:
                    continue
                kw = {**SETTINGS[setting], **VARIANTS[var], "threads": args.threads}
                if args.max_iter is not None:
                    kw["max_iter"] = args.max_iter
                load1 = os.getloadavg()[0]
                t0, c0 = time.perf_counter(), time.process_time()
                if var == "kmeans5":
                    labels = _kmeans_labels(img, VARIANTS[var]["k"], args.seed)
                    info = {"iterations": 0, "stop_reason": "-", "k_star": None,
                            "n_labels": []}
                elif var in ANCHORS:
                    from skimage.segmentation import felzenszwalb

                    labels = felzenszwalb(img, **VARIANTS[var]).astype(np.int32)
                    if var == "felz200_colourmerge":
                        from physeg._validate import to_float01
                        from physeg.families.dynaseg._merge import merge_hierarchical
                        from physeg.families.dynaseg._regions import colour_features

                        labels = merge_hierarchical(
                            labels, colour_features(to_float01(img)), threshold=5.0)
                    info = {"iterations": 0, "stop_reason": "-", "k_star": None,
                            "n_labels": []}
                else:
                    labels, info = segment_dynaseg(img, channel_axis=-1, rng=args.seed,
                                                   return_info=True, **kw)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                regions = split_components(labels, min_size=args.min_size)
                if args.save_labels is not None:
                    args.save_labels.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(args.save_labels / f"{row['id']}_{var}_{setting}.npz",
                                        labels=labels.astype(np.uint16))
                rec = {
                    "id": row["id"], "variant": var, "setting": setting, "wall_s": wall,
                    "cpu_s": cpu, "load1": load1, "iterations": info["iterations"],
                    "stop_reason": info["stop_reason"], "k_star": info["k_star"],
                    "n_labels_trace": info["n_labels"][::5],
                    "n_segments_pred": int(np.unique(labels).size),
                    "n_segments": seg_counts(gts),
                    "hungarian": metrics.bsds_protocols(labels, gts, score="hungarian"),
                    "best_match": metrics.bsds_protocols(labels, gts, score="best_match"),
                    "n_regions_cc": int(regions.max()) + 1,
                    "hungarian_cc": metrics.bsds_protocols(regions, gts, score="hungarian"),
                    "best_match_cc": metrics.bsds_protocols(regions, gts, score="best_match"),
                }
                records.append(rec)
                save_runs(args.out, stored)
                print(f"{row['id']} {var:5s} {setting:12s} H-all {rec['hungarian']['all']:.3f} "
                      f"BM-all {rec['best_match']['all']:.3f} "
                      f"CC H-all {rec['hungarian_cc']['all']:.3f} "
                      f"segs {rec['n_segments_pred']:3d} "
                      f"its {info['iterations']:4d} ({info['stop_reason']}) wall {wall:6.1f}s "
                      f"cpu {cpu:6.1f}s load {load1:.1f}", flush=True)
                report(args.out)
    if records:
        print(run_table(summarise(records), meta))
    return 0


def _command_lines(tag: str, run: dict) -> list[str]:
    """The commands of one run; runs summarised by the old ``--combine-only`` step did not
    record their command line, so theirs is rebuilt from the stored meta and records."""
    cmds = [c for c in run["commands"] if "--combine-only" not in c]
    # parallel shards (an option since removed) ran the same command on halves of the images
    cmds = list(dict.fromkeys(re.sub(r" --shard \S+", "", c) for c in cmds))
    if cmds:
        return [f"`{c}`" for c in cmds]
    meta, recs = run["meta"], run["records"]
    variants = ",".join(sorted({r["variant"] for r in recs}))
    settings = ",".join(sorted({r["setting"] for r in recs}))
    cap = meta.get("max_iter_override")
    cmd = (f"python benchmarks/dynaseg_bsds.py --limit {len({r['id'] for r in recs})} "
           f"--variants {variants} --settings {settings}"
           + (f" --max-iter {cap}" if cap else "") + f" --tag {tag}")
    return [f"`{cmd}` (rebuilt from the stored meta; the command line was not recorded)"]


def report(out: Path, reference: str = "fast50") -> Path:
    """Write ``dynaseg_summary.md`` from ``dynaseg_summary.json``: every run's groups, each
    beside the reference run's FSF/fast numbers on exactly the same images (paired
    comparison), the command of every run, then ``dynaseg_notes.md`` verbatim."""
    runs = load_runs(out)["runs"]
    groups: dict = {}
    for tag, run in runs.items():
        for rec in run["records"]:
            groups.setdefault((tag, rec["variant"], rec["setting"]), []).append(rec)
    ref = {r["id"]: r for (t, v, st), recs in groups.items()
           if t == reference and v == "fsf" and st == "fast" for r in recs}
    lines = [
        "# DynaSeg on BSDS500: summary of all runs", "",
        "Regenerate: the command of each run is listed under the table (rows are grouped by "
        "run tag); every run stores its per-image records in `dynaseg_summary.json`, and "
        "`python benchmarks/dynaseg_bsds.py --report` re-renders this file from them.", "",
        "H = Hungarian-matched "
        "mIoU (seed protocol), BM = best-match-per-segment (official DynaSeg script), both "
        "segment-weighted; 'clusters' scores the cluster ids, '+CC' the connected regions "
        "(min 50 px). 'ref' columns: FSF/fast from the reference run on the same images. "
        "Runs tagged tv* and tune* (and the dynaseg_sweep* files) are on BSDS500 train/val "
        "images (tuning); all others "
        "on the 50 development test images.",
        "",
        "| run | variant | setting | n | H All | H Mean | BM All | H All +CC | BM All +CC | "
        "CPU s/img | wall s/img | iters | load | ref H All | ref H All +CC | ref CPU s |",
        "|" + "---|" * 16,
    ]
    for (tag, var, setting), recs in sorted(groups.items()):
        e = summarise(recs)[f"{var}/{setting}"]
        same = [ref[r["id"]] for r in recs if r["id"] in ref]
        if len(same) == len(recs) and not (tag == reference and var == "fsf"):
            r_e = summarise(same)["fsf/fast"]
            refcols = (f"{r_e['hungarian_all']:.3f} | {r_e['hungarian_cc_all']:.3f} | "
                       f"{r_e['cpu_s_mean']:.1f}")
        else:
            refcols = "- | - | -"
        lines.append(
            f"| {tag} | {var} | {setting} | {e['n_images']} | {e['hungarian_all']:.3f} | "
            f"{e['hungarian_mean']:.3f} | {e['best_match_all']:.3f} | "
            f"{e['hungarian_cc_all']:.3f} | {e['best_match_cc_all']:.3f} | "
            f"{e['cpu_s_mean']:.1f} | {e['wall_s_mean']:.1f} | {e['iterations_mean']:.0f} | "
            f"{e['load1_mean']:.1f} | {refcols} |")
    lines += ["", "Commands (the data folder is `--data`, default `$PHYSEG_DATA/bsds500`):", ""]
    for tag in sorted(runs):
        lines.append(f"* {tag}: " + "; ".join(_command_lines(tag, runs[tag])))
    notes = out / "dynaseg_notes.md"  # hand-written conclusions, appended verbatim
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    path = out / "dynaseg_summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
