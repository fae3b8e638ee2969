"""The kinetic particle model's two fast paths, each against the computation it replaces.

Regenerate::

    python benchmarks/kinetic_fast_paths.py

Results: ``benchmarks/results/kinetic_fast_paths.json`` and ``.md``. One thread
(``_common.single_thread``); CPU microseconds per call, the best of 5 timings of 50 calls
(the machine is shared: only ratios within the run count).

Measured:

- **Disk sums** (``_dsmc.LocalAverager.mean``: deposit, disk sums, gather) of N = one particle
  per cell with d = 1 feature, on square grids of 60², 120² and 256² cells and disk radii of
  1, 2, 3, 5 and 7 cells, by row boxes (running sums along the columns) and by the FFT
  (``method="row boxes"`` / ``"fft"``), the largest difference of the local means, and the
  path ``method="auto"`` takes. Small colour images (wbc, 120² pixels) run their particles on
  a 60² grid with a radius of 1 cell; the default 256² run has 7 cells.
- **Pair draws** (``_dsmc.distinct_sample``, 5 % of N, the default rates) against the full
  permutation ``rng.permutation(N)[:k]`` they replace, at N = 3 600, 16 384, 65 536, 262 144.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.single_thread()  # before numpy loads

import numpy as np  # noqa: E402

from physeg.families.kinetic import _dsmc  # noqa: E402

GRIDS = (60, 120, 256)
RADII = (1, 2, 3, 5, 7)
PARTICLES = (3_600, 16_384, 65_536, 262_144)


def per_call_us(fn, number: int = 50, repeat: int = 5) -> float:
    timer = timeit.Timer(fn, timer=__import__("time").process_time)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def disk_sums() -> list[dict]:
    rows = []
    for n in GRIDS:
        rng = np.random.default_rng(0)
        shape = (n, n)
        cells = rng.permutation(n * n)
        c = rng.random((n * n, 1))
        counts = np.bincount(cells, minlength=n * n).astype(np.float64)
        for r_cells in RADII:
            radius = (r_cells + 0.5) * 2.0 / n
            out = {}
            default = "row boxes" if _dsmc.LocalAverager(shape, radius).row_box else "fft"
            for label in ("row boxes", "fft"):
                avg = _dsmc.LocalAverager(shape, radius, label)
                padded = avg.padded(cells)
                out[label] = (per_call_us(lambda: avg.mean(c, cells, padded, counts)),
                              avg.mean(c, cells, padded, counts))
            rows.append({"grid": n, "radius_cells": r_cells,
                         "row_boxes_us": out["row boxes"][0], "fft_us": out["fft"][0],
                         "max_abs_difference": float(np.abs(out["row boxes"][1]
                                                            - out["fft"][1]).max()),
                         "default_path": default})
            print(rows[-1], flush=True)
    return rows


def pair_draws() -> list[dict]:
    rows = []
    for n in PARTICLES:
        k = 2 * int(round(0.05 * n / 2))
        rng = np.random.default_rng(0)
        rows.append({"N": n, "k": k,
                     "distinct_sample_us": per_call_us(lambda: _dsmc.distinct_sample(rng, n, k)),
                     "permutation_us": per_call_us(lambda: rng.permutation(n)[:k])})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    res = {"environment": _common.environment(), "row_box_max": _dsmc.ROW_BOX_MAX,
           "row_box_cells": _dsmc.ROW_BOX_CELLS,
           "disk_sums": disk_sums(), "pair_draws": pair_draws()}
    md = ["# Kinetic particle model: the fast paths against what they replace", "",
          f"One thread, CPU µs per call (best of 5 × 50). Row boxes are taken at a radius of "
          f"1 cell, and up to `ROW_BOX_MAX` = {_dsmc.ROW_BOX_MAX} cells on grids of at most "
          f"`ROW_BOX_CELLS` = {_dsmc.ROW_BOX_CELLS} cells; the FFT otherwise.", "",
          "## Disk sums (`LocalAverager.mean`, one particle per cell, d = 1)", "",
          "| grid | radius (cells) | row boxes µs | FFT µs | row boxes / FFT | max |Δ chat| "
          "| default |", "|---|---|---|---|---|---|---|"]
    for r in res["disk_sums"]:
        md.append(f"| {r['grid']}² | {r['radius_cells']} | {r['row_boxes_us']:.0f} | "
                  f"{r['fft_us']:.0f} | {r['row_boxes_us'] / r['fft_us']:.2f} | "
                  f"{r['max_abs_difference']:.1e} | {r['default_path']} |")
    md += ["", "## Pair draws (5 % of N)", "",
           "| N | k | distinct_sample µs | permutation µs | ratio |", "|---|---|---|---|---|"]
    for r in res["pair_draws"]:
        md.append(f"| {r['N']} | {r['k']} | {r['distinct_sample_us']:.0f} | "
                  f"{r['permutation_us']:.0f} | "
                  f"{r['distinct_sample_us'] / r['permutation_us']:.2f} |")
    md.append("")
    _common.write_results("kinetic_fast_paths", res, "\n".join(md),
                          regenerate=_common.command(__file__))
    print("\n".join(md))


if __name__ == "__main__":
    main()
