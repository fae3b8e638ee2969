"""3D MSNet on synthetic volumes: ellipsoids + Gaussian noise + a smooth multiplicative bias field.

Regenerate::

    python benchmarks/msnet_3d.py --iterations 200 --shape 16,32,32 --n-train 3 --limit 2 \
        --seed 0

Measures: volumes come from :func:`physeg.data.synthetic.ellipsoids_volume` (6 ellipsoids, exact labels),
otherwise from an equivalent local generator. Each volume is corrupted by a multiplicative
bias field ``b(z, y, x) = 1 + 0.3 (a·x̂)`` (a random linear ramp over the volume, ±30 %) and
additive Gaussian noise σ = 0.2 (foreground 1, background 0), so a global threshold is no
longer exact. MSNet-3D (widths 4, 8, 16; anisotropic first stride (1, 2, 2)) is trained
with the shared trainer (Dice + CE, Adam 3e-3, batch 2) on ``n_train`` volumes and the
foreground Dice is measured on ``n_test`` (``--limit``) other volumes.

Results: ``benchmarks/results/msnet_3d.json`` and ``msnet_3d.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def _volume(shape, rng):
    try:
        from physeg.data.synthetic import ellipsoids_volume

        vol, lab = ellipsoids_volume(shape, n=6, rng=rng)
    except ImportError:  # pragma: no cover - fallback when the generator is absent
        dims = shape
        coords = np.meshgrid(*[-1 + (2 * np.arange(d) + 1) / d for d in dims], indexing="ij")
        lab = np.zeros(dims, np.uint8)
        for _ in range(6):
            semi = rng.uniform(0.2, 0.35, 3)
            c = rng.uniform(-1 + semi, 1 - semi)
            q = sum(((x - ci) / s) ** 2 for x, ci, s in zip(coords, c, semi, strict=True))
            lab[q <= 1] = 1
        vol = lab.astype(np.float32)
    coords = np.meshgrid(*[np.linspace(-1, 1, d) for d in shape], indexing="ij")
    a = rng.normal(size=3)
    a /= np.linalg.norm(a)
    bias = 1.0 + 0.3 * sum(ai * x for ai, x in zip(a, coords, strict=True))
    noisy = vol * bias + rng.normal(0.0, 0.2, size=shape)
    return noisy.astype(np.float32), lab


def run(iterations=200, n_train=3, n_test=2, shape=(16, 32, 32), seed=0, max_time=None,
        log=None) -> dict:
    import torch

    from physeg import fit

    torch.set_num_threads(1)

    rng = np.random.default_rng(seed)
    data = [_volume(shape, rng) for _ in range(n_train + n_test)]
    tr, te = data[:n_train], data[n_train:]
    t0 = time.perf_counter()
    model = fit("msnet", [v for v, _ in tr], [m for _, m in tr], widths="4,8,16",
                strides="1,2,2;2", iterations=iterations, batch_size=2, lr=3e-3, loss="dice_ce",
                val_fraction=0.0, patch=None, rng=seed, threads=1, max_time=max_time,
                val_every=25)
    train_s = time.perf_counter() - t0
    dices = []
    for v, m in te:
        p = model.predict(v)
        dices.append(float(2 * np.sum((p == 1) & (m == 1)) / (np.sum(p == 1) + np.sum(m == 1))))
    fractions = [float(np.mean(m)) for _, m in te]
    return {"dice": dices, "foreground_fraction": fractions, "dice_mean": float(np.mean(dices)),
            "train_seconds": train_s,
            "iterations": model.info["history"]["iterations_run"],
            "parameters": model.info["parameters"], "shape": list(shape),
            "n_train": n_train, "n_test": n_test, "seed": seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--shape", default="16,32,32")
    ap.add_argument("--n-train", type=int, default=3)
    ap.add_argument("--limit", type=int, default=2, help="number of test volumes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    res = run(args.iterations, args.n_train, args.limit, shape, args.seed)
    cmd = (f"python benchmarks/msnet_3d.py --iterations {args.iterations} --shape "
           f"{args.shape} --n-train {args.n_train} --limit {args.limit} --seed {args.seed}")
    md = [
        "# MSNet-3D on synthetic ellipsoid volumes (noise σ = 0.2, ±30 % bias field)", "",
        f"Command: `{cmd}`", "",
        "| volumes (train/test) | shape | params | iterations | train s | Dice per test volume "
        "| mean Dice |",
        "|---|---|---|---|---|---|---|",
        f"| {res['n_train']}/{res['n_test']} | {'x'.join(map(str, shape))} | "
        f"{res['parameters']:,} | {res['iterations']} | {res['train_seconds']:.0f} | "
        f"{', '.join(f'{d:.4f}' for d in res['dice'])} | {res['dice_mean']:.4f} |",
    ]
    _common.write_results("msnet_3d", res, "\n".join(md), regenerate=cmd)
    print("\n".join(md))


if __name__ == "__main__":
    main()
