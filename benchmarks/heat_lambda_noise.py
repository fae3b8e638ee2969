"""Heat's boundary weight ``lam`` against the image's noise level (a measured lead, issue 15).

Question: heat's grey region-means path weighs the boundary length by ``lam`` (default 8)
relative to the image variance. That default was chosen on noisy synthetic and 3D images;
on clean fluorescence (dsb2018's grey nuclei) the data term alone may be enough, and the
boundary term only rounds off small nuclei. Would a weight scaled by the measured noise
help the clean images without hurting the noisy ones?

Protocol, seed 0, ``segment_heat`` at the defaults except ``lam``:

- images: dsb2018's grey *tuning rows* (``rows[1::3] + rows[2::3]`` of the development set,
  the rows ``real_images.py`` does not score; colour images skipped, grey images stored as
  three equal channels taken as grey), and the synthetic grid of ``heat_vs_anchors.py``
  (every shape x σ 0.05-0.3, 256², draw 1);
- noise ratio = σ_noise² / variance of the image, with σ_noise from Immerkær's estimator
  (J. Immerkær, "Fast noise variance estimation", CVIU 64, 1996: the 3x3 Laplacian
  difference kernel, σ = sqrt(π/2) · mean|K∗x| / 6, interior pixels only);
- Dice of label 1 against ``mask > 0`` at ``lam`` in ``--lams`` and at the candidate rule
  ``lam_eff = 8 · min(1, ratio / --ref)``.

Regenerate::

    python benchmarks/heat_lambda_noise.py [--data DIR] [--lams 0,1,2,4,8] [--ref 0.5]

Results: ``benchmarks/results/heat_lambda_noise.json`` and ``.md``. Not a default: the rule
is reported so that adopting it (with the real_images rows and the blockwise path, which
must share one global weight) can start from a measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from heat_vs_anchors import SHAPES, SIGMAS, synthetic_image  # noqa: E402
from real_images import dataset_items, load_item  # noqa: E402

IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)


def noise_ratio(grey: np.ndarray) -> float:
    """σ_noise² / variance of a 2-D grey image (Immerkær's estimator, standardised image)."""
    x = grey.astype(np.float64)
    x = (x - x.mean()) / max(x.std(), 1e-12)
    residual = ndi.convolve(x, IMMERKAER, mode="reflect")[1:-1, 1:-1]
    return float((np.sqrt(np.pi / 2) * np.abs(residual).mean() / 6.0) ** 2)


def dice(labels: np.ndarray, mask: np.ndarray) -> float:
    """The headline score: Dice of label 1 against ``mask > 0`` (:func:`physeg.metrics.dice`)."""
    from physeg.metrics import dice as dice_score

    return float(dice_score(labels == 1, np.asarray(mask) > 0, labels=1))


def grey_items(data: Path):
    """(set, id, grey image, mask) of the dsb2018 grey tuning rows and the synthetic grid."""
    from physeg._regions import is_colour

    rows = dataset_items(data, "dsb2018", None, 1)
    for row in rows[1::3] + rows[2::3]:
        img, mask = load_item(data, "dsb2018", row)
        if img.ndim == 3 and is_colour(img, -1):
            continue
        yield "dsb2018 grey", row["id"][:12], (img[..., 0] if img.ndim == 3 else img), mask
    for shape in SHAPES:
        for sigma in SIGMAS:
            img, mask = synthetic_image(shape, 256, sigma, draw=1)
            yield "synthetic", f"{shape}/{sigma}", img, mask


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_data_argument(ap)
    ap.add_argument("--lams", default="0,1,2,4,8", help="comma-separated lam values")
    ap.add_argument("--ref", type=float, default=0.5, help="noise ratio at which the rule "
                    "reaches the default weight 8")
    args = ap.parse_args(argv)
    if not (args.data / "dsb2018").is_dir():
        print(f"error: no dsb2018 folder under {args.data}; pass --data DIR", file=sys.stderr)
        return 2
    from physeg.families.heat import segment_heat

    lams = [float(v) for v in args.lams.split(",")]
    records = []
    for dataset, iid, img, mask in grey_items(args.data):
        ratio = noise_ratio(img)
        rec = {"set": dataset, "id": iid, "noise_ratio": ratio,
               "dice": {f"{lam:g}": dice(segment_heat(img, lam=lam, rng=0), mask) for lam in lams}}
        rec["rule_lam"] = 8.0 * min(1.0, ratio / args.ref)
        rec["rule_dice"] = dice(segment_heat(img, lam=rec["rule_lam"], rng=0), mask)
        records.append(rec)
        print(dataset, iid, f"ratio {ratio:.4f}", rec["dice"], f"rule {rec['rule_dice']:.4f}",
              flush=True)

    lines = ["# Heat: boundary weight against the noise level (grey means path)", "",
             f"Dice of label 1 (seed 0) at each `lam`, and at the rule "
             f"`lam_eff = 8 · min(1, noise ratio / {args.ref:g})`. Not the default: a lead.", "",
             "| set | images | noise ratio (min–max) | "
             + " | ".join(f"lam {k:g}" for k in lams) + " | rule | rule min |",
             "|---|---|---|" + "---|" * (len(lams) + 2)]
    summary = {}
    for dataset in ("dsb2018 grey", "synthetic"):
        rs = [r for r in records if r["set"] == dataset]
        if not rs:
            continue
        ratios = [r["noise_ratio"] for r in rs]
        means = {k: float(np.mean([r["dice"][k] for r in rs])) for k in rs[0]["dice"]}
        rule = [r["rule_dice"] for r in rs]
        summary[dataset] = {"images": len(rs), "mean_dice": means,
                            "rule_mean": float(np.mean(rule)), "rule_min": float(np.min(rule))}
        lines.append(f"| {dataset} | {len(rs)} | {min(ratios):.4f}–{max(ratios):.3f} | "
                     + " | ".join(f"{v:.4f}" for v in means.values())
                     + f" | {np.mean(rule):.4f} | {np.min(rule):.4f} |")
    _common.write_results("heat_lambda_noise", {"environment": _common.environment(),
                                                 "ref": args.ref, "summary": summary,
                                                 "images": records},
                          "\n".join(lines), regenerate=_common.command(__file__, argv))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
