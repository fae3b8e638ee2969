"""Sweep DynaSeg's region post-processing on the tuning cache (train/val images only).

Reads the per-image network outputs saved by ``benchmarks/dynaseg_cache.py`` and scores
post-processing configurations (connected regions, minimum size, hierarchical merge
criteria and stopping rules) against the BSDS500 annotations: segment-weighted H All
(Hungarian, the seed's protocol) and BM All (official best-match), plus the mean region
count. Each configuration is a JSON dict of :func:`postprocess` arguments.

Usage::

    python benchmarks/dynaseg_sweep.py --cache /tmp/dyncache/regions_s0 --configs configs.json \
        --tag sweep1

Writes ``benchmarks/results/dynaseg_<tag>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "src"))

from dynaseg_bsds import load, read_rows  # noqa: E402

from physeg.metrics._matching import bsds_segment_lists  # noqa: E402


def postprocess_regions(
    image: np.ndarray,
    clusters: np.ndarray | Sequence[np.ndarray],
    *,
    response: np.ndarray | Sequence[np.ndarray] | None = None,
    min_size: int = 20,
    min_frac: float = 0.0,
    merge: str = "hierarchical",
    threshold: float = np.inf,
    n_regions: int = 1,
    resp_weight: float = 0.0,
    edge: str = "none",
    edge_weight: float = 0.0,
    size_power: float = 0.0,
    sigma: float = 0.0,
    final_min_frac: float = 0.0,
    colour: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster map(s) -> regions: connected regions (min size), then a merge of their RAG.

    Tuning tool only (the library's presets use ``segment_dynaseg``'s own pipeline).
    ``merge``: "none", "threshold" (one-shot cut, ``merge_similar_regions``) or
    "hierarchical" (``merge_hierarchical`` with ``edge`` = "none" / "lab" (Sobel of Lab) /
    "resp" (gradient of the response) / "coassoc" (several cluster maps)).
    """
    from scipy import ndimage as ndi

    from physeg._validate import to_float01
    from physeg.families.dynaseg._merge import merge_hierarchical
    from physeg.families.dynaseg import _colour_features, merge_similar_regions, split_components

    x01 = to_float01(np.asarray(image))
    if x01.ndim == 2:
        x01 = x01[..., None]
    lab = _colour_features(x01) if colour is None else np.asarray(colour, dtype=np.float64)
    if sigma > 0:
        lab = ndi.gaussian_filter(lab, sigma=(sigma, sigma, 0))
    cl = [np.asarray(clusters)] if np.ndim(clusters) == 2 else [np.asarray(c) for c in clusters]
    if len(cl) == 1:
        base = cl[0]
    else:  # pixels grouped together by every run
        stack = np.stack([c.astype(np.int64) for c in cl])
        _, base = np.unique(stack.reshape(len(cl), -1), axis=1, return_inverse=True)
        base = base.reshape(cl[0].shape)
    ms = max(int(min_size), int(round(min_frac * base.size)))
    regions = split_components(base, min_size=ms)
    feats = lab
    resp = None
    if response is not None:
        resp = [response] if np.ndim(response) == 3 else list(response)
        resp = np.concatenate([np.asarray(r, dtype=np.float32) for r in resp], axis=-1)
    if resp_weight > 0 and resp is not None:
        feats = np.concatenate([lab, resp_weight * resp / np.sqrt(resp.shape[-1])], axis=-1)
    emap = None
    if edge == "lab":
        g = [np.hypot(ndi.sobel(lab[..., c], 0), ndi.sobel(lab[..., c], 1))
             for c in range(lab.shape[-1])]
        emap = np.sqrt(np.sum(np.square(g), axis=0)) / 8.0
    elif edge == "resp" and resp is not None:
        g = [np.hypot(ndi.sobel(resp[..., c], 0), ndi.sobel(resp[..., c], 1))
             for c in range(resp.shape[-1])]
        emap = np.sqrt(np.sum(np.square(g), axis=0) / resp.shape[-1]) / 8.0 * 10
    elif edge == "coassoc":
        st = np.stack(cl)
        dv = np.zeros(base.shape)
        dv[:-1] += (st[:, 1:] != st[:, :-1]).mean(0)
        dv[1:] += (st[:, 1:] != st[:, :-1]).mean(0)
        dv[:, :-1] += (st[:, :, 1:] != st[:, :, :-1]).mean(0)
        dv[:, 1:] += (st[:, :, 1:] != st[:, :, :-1]).mean(0)
        emap = 10.0 * dv
    if merge == "threshold":
        regions = merge_similar_regions(regions, feats, threshold=threshold)
    elif merge == "hierarchical":
        regions = merge_hierarchical(regions, feats, edge=emap, edge_weight=edge_weight,
                                     size_power=size_power, threshold=threshold,
                                     n_regions=n_regions)
    if final_min_frac > 0:
        regions = split_components(regions, min_size=int(round(final_min_frac * base.size)))
    return regions



def main(argv: list[str] | None = None) -> int:
    from physeg._validate import to_float01
    from physeg.families.dynaseg import _colour_features

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "bsds500")
    ap.add_argument("--cache", type=Path, nargs="+", required=True,
                    help="cache folder(s); several = the runs of several seeds (co-association)")
    ap.add_argument("--configs", required=True, help="JSON file: {name: kwargs}")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--tag", default="sweep")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    configs = json.loads(Path(args.configs).read_text())
    rows = read_rows(args.data, args.limit, "trainval")
    acc = {k: {"H": [], "BM": [], "Hf": [], "Hc": [], "regions": [], "s": 0.0}
           for k in configs}
    n_img = 0
    for row in rows:
        files = [c / f"{row['id']}.npz" for c in args.cache]
        if not all(f.exists() for f in files):
            continue
        assert row["orig_split"] in ("train", "val")
        n_img += 1
        img, gts = load(args.data, row)
        zs = [np.load(f) for f in files]
        clusters = [z["clusters"] for z in zs]
        response = [z["response"] for z in zs]
        colour = _colour_features(to_float01(img))
        for name, kw in configs.items():
            t0 = time.process_time()
            reg = postprocess_regions(img, clusters[0] if len(clusters) == 1 else clusters,
                                      response=response[0] if len(zs) == 1 else response,
                                      colour=colour, **kw)
            a = acc[name]
            a["s"] += time.process_time() - t0
            h = bsds_segment_lists(reg, gts, "hungarian")
            a["H"].append(h["all"])
            a["Hf"].append(h["fine"])
            a["Hc"].append(h["coarse"])
            a["BM"].append(bsds_segment_lists(reg, gts, "best_match")["all"])
            a["regions"].append(int(reg.max()) + 1)
    table = {k: {"H_all": float(np.concatenate(v["H"]).mean()),
                 "H_fine": float(np.concatenate(v["Hf"]).mean()),
                 "H_coarse": float(np.concatenate(v["Hc"]).mean()),
                 "BM_all": float(np.concatenate(v["BM"]).mean()),
                 "regions": float(np.mean(v["regions"])),
                 "regions_median": float(np.median(v["regions"])),
                 "cpu_s": v["s"] / max(n_img, 1), "n_images": n_img, "config": configs[k]}
             for k, v in acc.items() if v["H"]}
    cmd = "python benchmarks/dynaseg_sweep.py " + " ".join(sys.argv[1:] if argv is None
                                                            else argv)
    (args.out / f"dynaseg_{args.tag}.json").write_text(json.dumps(
        {"command": cmd, "cache": [str(c) for c in args.cache], "table": table}, indent=2))
    lines = [f"# DynaSeg post-processing sweep on BSDS500 train/val images ({args.tag})", "",
             f"Command: `{cmd}`  ", f"Cache: {', '.join(str(c) for c in args.cache)}", "",
             "Segment-weighted scores over the images' annotators; regions = mean count.", "",
             "| config | n | regions (mean / median) | H All | H Fine | H Coarse | BM All | "
             "post-proc CPU s/img | kwargs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, e in sorted(table.items(), key=lambda kv: -kv[1]["H_all"]):
        lines.append(f"| {k} | {e['n_images']} | {e['regions']:.0f} / "
                     f"{e['regions_median']:.0f} | {e['H_all']:.3f} | {e['H_fine']:.3f} | "
                     f"{e['H_coarse']:.3f} | {e['BM_all']:.3f} | {e['cpu_s']:.2f} | "
                     f"`{json.dumps(e['config'])}` |")
    (args.out / f"dynaseg_{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
