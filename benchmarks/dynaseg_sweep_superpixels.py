"""Superpixel + merge sweep behind DynaSeg's ``superpixels`` preset (train/val images only).

For the first ``--limit`` BSDS500 train/val images (``read_rows(..., "trainval")``; the
test images are never read) this scores, segment-weighted over all annotators (H All =
Hungarian, BM All = official best-match):

* Felzenszwalb superpixels alone (scikit-image, ``sigma=0.5``; the old anchor
  ``scale=100, sigma=0.8, min_size=50`` for reference) -- no network;
* the same merged greedily by colour only (``merge_hierarchical`` on L*a*b* means) or by
  colour + the Sobel magnitude of L*a*b* along the border -- no network;
* the same merged by colour + the co-association boundary of 1 or 2 DynaSeg runs (the
  cluster maps cached by ``benchmarks/dynaseg_cache.py`` for seeds 0 and 1).

Usage::

    python benchmarks/dynaseg_cache.py --limit 60 --seed 0
    python benchmarks/dynaseg_cache.py --limit 60 --seed 1
    python benchmarks/dynaseg_sweep_superpixels.py --limit 60 --tag sweep_superpixels60
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "src"))

from dynaseg_bsds import load, read_rows  # noqa: E402


def candidates(img, cls):
    from scipy import ndimage as ndi
    from skimage.segmentation import felzenszwalb

    from physeg._validate import to_float01
    from physeg.families.dynaseg._merge import coassociation_boundary, merge_hierarchical
    from physeg.families.dynaseg import _colour_features

    lab = _colour_features(to_float01(img))
    e2 = coassociation_boundary(cls)
    e1 = coassociation_boundary(cls[:1])
    g = [np.hypot(ndi.sobel(lab[..., c], 0), ndi.sobel(lab[..., c], 1)) for c in range(3)]
    elab = np.sqrt(np.sum(np.square(g), axis=0)) / 8.0
    out = {"felz s100 sigma0.8 min50 (old anchor)": felzenszwalb(img, scale=100, sigma=0.8,
                                                                  min_size=50)}
    for sc, ms in ((200, 10), (200, 20), (150, 10)):
        f = felzenszwalb(img, scale=sc, sigma=0.5, min_size=ms)
        k = f"felz s{sc} min{ms}"
        out[k] = f
        out[k + " + colour merge t5"] = merge_hierarchical(f, lab, threshold=5)
        out[k + " + colour+Lab-edge(0.5) t8"] = merge_hierarchical(
            f, lab, edge=elab, edge_weight=0.5, threshold=8)
        for ew, t in ((20, 10), (30, 10), (40, 12)) if (sc, ms) == (200, 20) else ((20, 10),):
            out[k + f" + colour+coassoc2({ew}) t{t}"] = merge_hierarchical(
                f, lab, edge=e2, edge_weight=ew, threshold=t)
        out[k + " + colour+coassoc1(20) t10"] = merge_hierarchical(
            f, lab, edge=e1, edge_weight=20, threshold=10)
    return out


def main(argv: list[str] | None = None) -> int:
    from physeg.metrics._matching import bsds_segment_lists

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "bsds500")
    ap.add_argument("--cache", type=Path, nargs=2,
                    default=[Path("/tmp/dyncache/regions_s0"), Path("/tmp/dyncache/regions_s1")])
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--tag", default="sweep_superpixels60")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    res: dict = {}
    n_img = 0
    for row in read_rows(args.data, args.limit, "trainval"):
        assert row["orig_split"] in ("train", "val")
        files = [c / f"{row['id']}.npz" for c in args.cache]
        if not all(f.exists() for f in files):
            continue
        n_img += 1
        img, gts = load(args.data, row)
        cls = [np.load(f)["clusters"].astype(np.int64) for f in files]
        for k, reg in candidates(img, cls).items():
            a = res.setdefault(k, {"H": [], "BM": [], "n": []})
            a["H"].append(bsds_segment_lists(reg, gts, "hungarian")["all"])
            a["BM"].append(bsds_segment_lists(reg, gts, "best_match")["all"])
            a["n"].append(int(reg.max()) + 1)
    table = {k: {"H_all": float(np.concatenate(a["H"]).mean()),
                 "BM_all": float(np.concatenate(a["BM"]).mean()),
                 "regions": float(np.mean(a["n"])), "n_images": n_img}
             for k, a in res.items()}
    cmd = "python benchmarks/dynaseg_sweep_superpixels.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    (args.out / f"dynaseg_{args.tag}.json").write_text(json.dumps(
        {"command": cmd, "table": table}, indent=2))
    lines = [f"# Superpixels + merge on BSDS500 train/val images ({args.tag})", "",
             f"Command: `{cmd}`", "",
             "Segment-weighted All scores; 'coassocN(w)' = co-association boundary of N "
             "DynaSeg runs (regions preset networks, seeds 0..N-1) with weight w; t = merge "
             "threshold.", "",
             "| candidate | n | regions | H All | BM All |", "|---|---|---|---|---|"]
    for k, e in sorted(table.items(), key=lambda kv: -kv[1]["H_all"]):
        lines.append(f"| {k} | {e['n_images']} | {e['regions']:.0f} | {e['H_all']:.3f} | "
                     f"{e['BM_all']:.3f} |")
    (args.out / f"dynaseg_{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
