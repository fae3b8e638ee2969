"""Few labels: prediction time of ``physeg.fit("heat", ...)`` on 512² colour images, one thread.

Regenerate::

    OMP_NUM_THREADS=1 nice python benchmarks/few_labels_timing.py [--data DIR] [--repeats 3]

Protocol: a learned heat model is fitted on the S = 3 training images of ``few_labels.py``'s
first ph2 draw (its defaults, its seed); the images timed are 512 x 512 centre crops of the
next ``--images`` ph2 development images that are neither training nor test images of that
benchmark. The same for wbc (a three-class model; its 120² images upscaled to 512²).
Every image is predicted ``--repeats`` times with ``adapt=0`` and ``adapt=1``
(``model.predict``, wall seconds, after one untimed warm-up call); the table gives the median
and the maximum over images x repeats, and the median of each stage (no-label prior features,
pixel features, forest, prior shift + descent + adaptation). The target of issue 16 is
<= 1 s per image. Wall time on a shared machine: the load average is recorded with it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import _common  # noqa: E402

_common.single_thread()

import few_labels as fl  # noqa: E402
import numpy as np  # noqa: E402


def crop(img: np.ndarray, size: int = 512) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"image {img.shape} is smaller than {size}²")
    r, c = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[r:r + size, c:c + size])


def stages(model, img: np.ndarray, adapt: float) -> dict[str, float]:
    """Seconds of each stage of ``model.predict`` (the same calls, timed apart)."""
    from physeg._features import mixture_features, pixel_features
    from physeg._validate import as_rng
    from physeg.families.heat._learned import prior_channels, segment_posterior

    lik, p = model.likelihood, model.params
    t = [time.perf_counter()]
    extra = prior_channels(img, -1)
    t.append(time.perf_counter())
    F = pixel_features(img, -1, sigmas=lik.sigmas, border=lik.border, extra=extra)
    t.append(time.perf_counter())
    prob = lik.forest.proba(F.reshape(-1, F.shape[-1]))
    t.append(time.perf_counter())
    logp = np.log(np.maximum(prob, 1e-3)).astype(np.float32).reshape(F.shape[:-1] + (-1,))
    border = F[..., F.shape[-1] - lik.n_extra - 1]
    mix = mixture_features(F, lik.layout, lik.sigmas)
    segment_posterior(logp, border, mix, extra[..., 1], tau=p["tau"], lam=p["lam"], adapt=adapt,
                      prior_weight=p["prior_weight"], spacing=(1.0, 1.0), rng=as_rng(0))
    t.append(time.perf_counter())
    d = np.diff(t)
    return {"prior": d[0], "features": d[1], "forest": d[2], "regulariser": d[3]}


def upscale(img: np.ndarray, size: int = 512) -> np.ndarray:
    from skimage.transform import resize

    return resize(img, (size, size), order=1, preserve_range=True).astype(img.dtype)


def time_case(ds: str, data: Path, args) -> dict:
    """Fit on the first draw's S = 3 images of ``ds``, time 512² versions of the next
    ``args.images`` development images (ph2: centre crops; wbc, 120² cells: bilinear
    upscales, a three-class model)."""
    import physeg

    R = fl.rows(data, ds)
    test, pool = fl.split(len(R), 8)
    train_idx = fl.draw(pool, 3, 0, ds)
    pairs = [fl.load(data, ds, R[i]) for i in train_idx]
    model = physeg.fit("heat", [p[0] for p in pairs], [p[1] for p in pairs], rng=3)
    ids = [i for i in pool if i not in train_idx][:args.images]
    make = crop if ds == "ph2" else upscale
    imgs = [make(fl.load(data, ds, R[i])[0]) for i in ids]
    rows, walls = [], {0.0: [], 1.0: []}
    for img in imgs:
        for adapt in walls:
            model.predict(img, channel_axis=-1, adapt=adapt, follow_prior=False)  # warm-up
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model.predict(img, channel_axis=-1, adapt=adapt, follow_prior=False)
                walls[adapt].append(time.perf_counter() - t0)
                rows.append({"adapt": adapt, **stages(model, img, adapt)})
    return {"dataset": ds, "classes": len(model.likelihood.values),
            "train_ids": [R[i]["id"] for i in train_idx], "image_ids": [R[i]["id"] for i in ids],
            "fitted_params": model.params, "wall_s": {str(a): w for a, w in walls.items()},
            "stages": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_data_argument(ap)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--regenerate", default=None)
    args = ap.parse_args()

    data = Path(args.data)
    cases = [time_case(ds, data, args) for ds in ("ph2", "wbc")]
    env = _common.environment()
    # the binary ph2 case is the target's row (few_labels.py reads wall_s)
    out = {"environment": env, **cases[0], "cases": cases}
    md = ["# Few labels: prediction time on 512² colour images (one thread)", "",
          f"Models: `physeg.fit(\"heat\", ...)` on the S = 3 images of few_labels.py's first "
          f"draw; {args.repeats} repeats per image; load average {env['load_average'][0]:.2f} "
          f"on {env['cpus']} CPUs ({env['cpu_model']}).", "",
          "| dataset | classes | images | adapt | median s | max s | prior | features | forest "
          "| regulariser | <= 1 s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        for a, w in c["wall_s"].items():
            st = [r for r in c["stages"] if r["adapt"] == float(a)]
            med = {k: float(np.median([r[k] for r in st])) for k in
                   ("prior", "features", "forest", "regulariser")}
            what = "512² crops" if c["dataset"] == "ph2" else "512² upscales"
            md.append(f"| {c['dataset']} | {c['classes']} | {what} of {', '.join(c['image_ids'])}"
                      f" | {float(a):g} | {np.median(w):.3f} | {np.max(w):.3f} | "
                      f"{med['prior']:.3f} | {med['features']:.3f} | {med['forest']:.3f} | "
                      f"{med['regulariser']:.3f} | {'yes' if np.median(w) <= 1.0 else 'no'} |")
    md += ["", "Fitted parameters: " + "; ".join(f"{c['dataset']} {c['fitted_params']}"
                                              for c in cases)]
    cmd = args.regenerate or "OMP_NUM_THREADS=1 nice python benchmarks/few_labels_timing.py"
    pj, pm = _common.write_results("few_labels_timing", out, "\n".join(md), regenerate=cmd)
    print("\n".join(md))
    print(pj, pm)


if __name__ == "__main__":
    main()
