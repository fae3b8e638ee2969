"""Speed of the kinetic method: DSMC per step vs N, macroscopic loss evaluation, CBO fit.

Regenerate::

    python benchmarks/kinetic_speed.py        # [--limit N]: a quick, smaller run

Results: ``benchmarks/results/kinetic_speed.json`` and ``kinetic_speed.md``. Single-threaded
BLAS/FFT (``OMP_NUM_THREADS=1`` etc. are set before numpy is imported), so the numbers are one-core
numbers; the machine is shared, so every comparison is a ratio measured in the same run.

Measured:

- DSMC cost per step (space + local average + features) at 128^2, 256^2, 512^2 with the
  default rates, and with every particle interacting in space each step (``space_rate = 1/eps``
  per unit time, the paper's fast-space regime); cost per particle should stay flat (O(N)).
- ``physeg.segment(image, method="kinetic")`` on a 256^2 noisy square (target < 5 s).
- One macroscopic loss evaluation (64^2 training image, N_c = 50, 32^2 spatial grid, T = 4)
  for A = 1, 16, 64, 128 parameter sets evolved together, per parameter set, against the DSMC
  run it replaces (the particle model at 64^2 .. 512^2); and, for 64 agents, the U/W refresh
  schemes (adaptive default, fixed 0.05, 0.1, 0.025) against a fine fixed refresh of 0.0125:
  cost, refreshes per agent and the change of the final loss.
- One whole CBO fit (12 agents x 12 iterations) with the l2 and the Dice loss.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.single_thread()  # before numpy loads

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import physeg  # noqa: E402
from physeg.families.kinetic import _dsmc, _macro  # noqa: E402
from physeg.data.noise import noisy_shape  # noqa: E402



WALL: dict[str, float] = {}


def best_of(fn, repeat=3, key=None):
    """Smallest process CPU time over ``repeat`` runs (one core: the machine is shared, so
    wall time measures the contention; the smallest wall time is kept in WALL[key])."""
    ts, ws = [], []
    for _ in range(repeat):
        t0, w0 = time.process_time(), time.perf_counter()
        fn()
        ts.append(time.process_time() - t0)
        ws.append(time.perf_counter() - w0)
    if key is not None:
        WALL[key] = min(ws)
    return min(ts)


def dsmc_step_cost(n: int, steps: int, fast_space: bool) -> float:
    img, _ = noisy_shape("square", n, "gaussian", 2, rng=0)
    feats = _dsmc.image_features(img, None)
    prm = _dsmc.KineticParams(t_final=steps * 0.05, dt=0.05, space_rate=1.0 if fast_space
                              else 0.05)
    if fast_space:
        prm.eps = 0.05  # prob = space_rate dt / eps = 1: every particle interacts every step

    def run():
        p = _dsmc.make_particles(feats)
        _dsmc.simulate(p, prm, np.array([[0.5]]), np.random.default_rng(0))

    return best_of(run, 2) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="fewer sizes / agents (quick)")
    args = ap.parse_args()
    out: dict = {"load_average_start": os.getloadavg()[0]}
    sizes = (128, 256, 512) if not args.limit else (64, 128)
    rows = []
    for n in sizes:
        for fast in (False, True):
            s = dsmc_step_cost(n, 10, fast)
            rows.append({"size": n, "N": n * n, "fast_space": fast, "s_per_step": s,
                         "ns_per_particle_step": s / (n * n) * 1e9})
            print(rows[-1], flush=True)
    out["dsmc_steps"] = rows

    img256, m256 = noisy_shape("square", 256, "gaussian", 2, rng=1)
    t_seg = best_of(lambda: physeg.segment(img256, method="kinetic", rng=0), 2, key="seg256")
    lab = physeg.segment(img256, method="kinetic", rng=0)
    d = 2 * np.logical_and(lab > 0, m256).sum() / ((lab > 0).sum() + m256.sum())
    out["segment_256"] = {"cpu_seconds": t_seg, "wall_seconds": WALL["seg256"],
                          "dice": float(d)}
    print(out["segment_256"], flush=True)

    # macroscopic loss evaluation vs the DSMC run it replaces
    img64, m64 = noisy_shape("square", 64, "gaussian", 2, rng=2)
    st = _macro.macro_setup(_dsmc.image_features(img64, None), n_bins=50, n_space=32)
    gt = _macro.gt_distribution([1 - m64.mean(), m64.mean()], 50)
    macro = []
    for A in ((1, 16, 64, 128) if not args.limit else (1, 8)):
        rng = np.random.default_rng(0)
        kw = dict(delta=rng.uniform(0.1, 1, A), sigma=rng.uniform(0.05, 1, A),
                  radius=rng.uniform(0.02, 0.3, A), barriers=rng.uniform(0.3, 0.7, (A, 1, 1)))

        def ev(kw=kw):
            o = _macro.macro_solve(st, t_final=4.0, **kw)
            _macro.histogram_loss(o["rho"][:, 0], gt, 50)

        s = best_of(ev, 2)
        macro.append({"agents": A, "seconds": s, "seconds_per_agent": s / A})
        print(macro[-1], flush=True)
    out["macro"] = macro
    # the U/W refresh schemes against a fine fixed refresh (0.0125) as the reference, A = 64
    # agents: the change from the reference is the time-discretisation error of each scheme
    A = 64 if not args.limit else 8
    rng = np.random.default_rng(0)
    kw = dict(delta=rng.uniform(0.1, 1, A), sigma=rng.uniform(0.05, 1, A),
              radius=rng.uniform(0.02, 0.3, A), barriers=rng.uniform(0.3, 0.7, (A, 1, 1)))
    schemes = [("fine reference: fixed 0.0125", dict(refresh=0.0125, refresh_tol=0.0)),
               ("fixed 0.05 (adaptive off)", dict(refresh=0.05, refresh_tol=0.0)),
               ("adaptive, default (0.05, tol 1e-4)", dict()),
               ("fixed 0.1", dict(refresh=0.1, refresh_tol=0.0)),
               ("fixed 0.025", dict(refresh=0.025, refresh_tol=0.0))]
    losses, refresh_rows = {}, []
    for label, skw in schemes:
        box = {}

        def ev_rf(skw=skw, box=box):
            o = _macro.macro_solve(st, t_final=4.0, **skw, **kw)
            box["loss"] = _macro.histogram_loss(o["rho"][:, 0], gt, 50)
            box["refreshes"] = float(o["refreshes"].mean())

        s = best_of(ev_rf, 2)
        losses[label] = box["loss"]
        ref, fixed = losses[schemes[0][0]], losses.get(schemes[1][0], box["loss"])
        refresh_rows.append({"scheme": label, "seconds_per_agent": s / A,
                             "refreshes_per_agent": box["refreshes"],
                             "max_abs_loss_error_vs_fine": float(np.abs(box["loss"] - ref).max()),
                             "max_abs_loss_change_vs_fixed_0.05":
                                 float(np.abs(box["loss"] - fixed).max()),
                             "same_best_loss_as_fine": bool(
                                 abs(ref[np.argmin(box["loss"])] - ref.min()) < 1e-9)})
        print(refresh_rows[-1], flush=True)
    out["macro_refresh"] = refresh_rows
    dsmc_runs = {}
    for n in ((64, 128, 256, 512) if not args.limit else (64, 128)):
        im, _ = noisy_shape("square", n, "gaussian", 2, rng=3)
        dsmc_runs[n] = best_of(lambda im=im: physeg.segment(im, method="kinetic", rng=0), 2)
    out["dsmc_run"] = dsmc_runs
    out["ratios"] = {f"dsmc{n}_over_macro_A{r['agents']}": dsmc_runs[n] / r["seconds_per_agent"]
                     for n in dsmc_runs for r in macro}
    print(out["ratios"], flush=True)

    # whole CBO fits
    fits = {}
    img128, m128 = noisy_shape("square", 128, "gaussian", 2, rng=4)
    for loss in ("l2", "dice"):
        t0, c0 = time.perf_counter(), time.process_time()
        model = physeg.fit("kinetic", [img128], [m128], loss=loss,
                           n_agents=12 if not args.limit else 4,
                           max_iter=12 if not args.limit else 2, fit_size=64, rng=0)
        fits[loss] = {"seconds": time.process_time() - c0,
                      "wall_seconds": time.perf_counter() - t0, "n_evals": model.info["n_evals"],
                      "loss_value": model.info["loss_value"]}
        print(loss, fits[loss], flush=True)
    out["fits"] = fits

    out["load_average_end"] = os.getloadavg()[0]
    md = ["# Kinetic speed (process CPU time on one core; the 2-core machine is shared, so "
          "wall times are larger and noisy)", "",
          f"Load average (1 min) at the start / end of the run: {out['load_average_start']:.1f}"
          f" / {out['load_average_end']:.1f} (2 cores; CPU times also rise under load).", "",
          "## DSMC cost per step", "",
          "| image | N | space | CPU s / step | ns / particle / step |", "|---|---|---|---|---|"]
    for r in rows:
        mode = "every particle" if r["fast_space"] else "default (5%)"
        md.append(f"| {r['size']}^2 | {r['N']} | {mode} "
                  f"| {r['s_per_step']:.4f} | {r['ns_per_particle_step']:.0f} |")
    md += ["", f"Full default segmentation of a 256^2 noisy square (T = 4, 80 steps): "
           f"{t_seg:.2f} s CPU ({WALL['seg256']:.2f} s wall under contention), Dice {d:.4f} "
           "(target < 5 s on one core).", "",
           "## Macroscopic loss evaluation (64^2 image, N_c = 50, 32^2 grid, T = 4)", "",
           "| agents evolved together | CPU s | CPU s per agent |", "|---|---|---|"]
    for r in macro:
        md.append(f"| {r['agents']} | {r['seconds']:.3f} | {r['seconds_per_agent']:.4f} |")
    md += ["", f"U/W refresh schemes ({A} agents; loss spread over agents "
           f"{float(np.std(losses[schemes[1][0]])):.3f}; error = change of the final loss from "
           "the fine reference):", "",
           "| scheme | CPU s per agent | U/W refreshes per agent | max loss error vs fine | "
           "max loss change vs fixed 0.05 | best agent as fine |",
           "|---|---|---|---|---|---|"]
    for r in refresh_rows:
        md.append(f"| {r['scheme']} | {r['seconds_per_agent']:.4f} | "
                  f"{r['refreshes_per_agent']:.1f} | {r['max_abs_loss_error_vs_fine']:.2e} | "
                  f"{r['max_abs_loss_change_vs_fixed_0.05']:.2e} | "
                  f"{r['same_best_loss_as_fine']} |")
    md += ["", "DSMC run it replaces (default segmentation, same theta family): "
           + ", ".join(f"{n}^2 {s:.2f} s" for n, s in dsmc_runs.items()) + ".", "",
           "DSMC run / one macroscopic evaluation (per agent, with A agents evolved together; "
           "the CBO fit's default is A = 16):", "",
           "| DSMC image | " + " | ".join(f"A = {r['agents']}" for r in macro) + " |",
           "|---|" + "---|" * len(macro)]
    for n in dsmc_runs:
        cells = [f"{out['ratios'][f'dsmc{n}_over_macro_A{r}']:.0f}x"
                 for r in (row["agents"] for row in macro)]
        md.append(f"| {n}^2 | " + " | ".join(cells) + " |")
    md += ["", "## Whole CBO fit (128^2 image resized to 64^2)", "",
           "| loss | agents x iterations | evaluations | CPU s | final loss |",
           "|---|---|---|---|---|"]
    for loss, f in fits.items():
        md.append(f"| {loss} | {12 if not args.limit else 4} x {12 if not args.limit else 2} | "
                  f"{f['n_evals']} | {f['seconds']:.1f} | {f['loss_value']:.4f} |")
    md.append("")
    _common.write_results("kinetic_speed", out, "\n".join(md), regenerate=_common.command(__file__))
    print("\n".join(md))


if __name__ == "__main__":
    main()
