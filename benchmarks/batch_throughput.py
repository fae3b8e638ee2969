"""Throughput of ``physeg segment`` over a folder of images: serial, ``--jobs 2``, dask.

Regenerate::

    python benchmarks/batch_throughput.py --limit 200 --size 256   # [--method heat] [--no-dask]

Measures: writes N (default 200) synthetic noisy shape images (uint8 PNG, ``--size``², seeded), then
times the real command line end to end (a fresh process each time, as a user runs it):

1. ``physeg segment IN -o OUT --method M`` (serial),
2. ``physeg segment IN -o OUT --method M --jobs 2`` (process pool),
3. ``physeg segment IN -o OUT --method M --scheduler tcp://...`` on a local dask cluster of
   2 single-threaded worker processes started by this script,
4. the serial command again on its own finished output (resume: every file skipped).

All runs must give identical labels (checked). Speed-ups are ratios against the serial run of
the same session. The machine's CPUs are shared with other work, so the absolute times are
noisy; the ratio is the number to read. The images live in a temporary folder, deleted at
the end.

Results: ``benchmarks/results/batch_throughput.json`` and ``batch_throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> None:
    from physeg import io as pio
    from physeg.data.synthetic import SHAPES, shape_image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, _ = shape_image(SHAPES[i % len(SHAPES)], size, shape_value=0.7,
                             background_value=0.3)
        noisy = np.clip(img + rng.normal(0, 0.15, img.shape), 0, 1)
        pio.write_image(folder / f"img{i:04d}.png", np.round(noisy * 255).astype(np.uint8))


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def labels_of(folder: Path) -> dict[str, bytes]:
    from physeg import io as pio

    return {p.name: pio.read_mask(p).tobytes() for p in sorted(folder.glob("*.png"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=200, help="number of images (default 200)")
    ap.add_argument("--method", default="heat")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()

    exe = shutil.which("physeg") or sys.executable
    base = [exe] if exe.endswith("physeg") else [sys.executable, "-m", "physeg.cli"]
    work = Path(tempfile.mkdtemp(prefix="physeg-batch-bench-"))
    try:
        src = work / "in"
        t = time.perf_counter()
        make_images(src, args.limit, args.size)
        print(f"{args.limit} images of {args.size}² in {time.perf_counter() - t:.1f} s",
              flush=True)
        common = ["segment", str(src), "--method", args.method]
        rows = []

        def timed(name, extra, out):
            wall = run(base + common + ["-o", str(out)] + extra)
            rows.append({"config": name, "args": " ".join(extra) or "(serial)", "seconds": wall,
                         "images_per_s": args.limit / wall})
            print(f"{name:>10}: {wall:7.2f} s  ({args.limit / wall:6.1f} images/s)", flush=True)

        timed("serial", [], work / "serial")
        timed("jobs2", ["--jobs", "2"], work / "jobs2")
        cluster = None
        if not args.no_dask:
            import distributed

            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                               processes=True, dashboard_address=None)
            try:
                timed("dask2", ["--scheduler", cluster.scheduler_address], work / "dask2")
            finally:
                cluster.close()
        timed("resume", [], work / "serial")
        ref = labels_of(work / "serial")
        same = {r["config"]: labels_of(work / r["config"]) == ref
                for r in rows if r["config"] not in ("serial", "resume")}
        log = [json.loads(x) for x in (work / "serial" / "physeg-log.jsonl").read_text()
               .splitlines()]
        skipped = sum(1 for r in log if r.get("status") == "skipped")
        serial_s = rows[0]["seconds"]
        for r in rows:
            r["speedup_vs_serial"] = serial_s / r["seconds"]
        result = {
            "benchmark": "batch_throughput",
            "command": _common.command(__file__),
            "images": args.limit, "size": args.size, "method": args.method,
            "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
            "runs": rows, "identical_labels": same, "resume_skipped": skipped,
        }
        md = [
            "# physeg segment throughput",
            "",
            f"Command: `{result['command']}`: {args.limit} synthetic {args.size}² uint8 PNGs, "
            f"method `{args.method}`, the real CLI in a fresh process per run (start-up "
            f"included). Machine: {os.cpu_count()} CPU cores shared with other jobs (load "
            f"average at the end {os.getloadavg()[0]:.1f}), so read the ratios.",
            "",
            "| run | arguments | seconds | images/s | speed-up vs serial |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            md.append(f"| {r['config']} | `{r['args']}` | {r['seconds']:.2f} | "
                      f"{r['images_per_s']:.1f} | {r['speedup_vs_serial']:.2f} |")
        md += ["", "Identical labels to the serial run: "
               + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in same.items())
               + f". The resume run skipped {skipped} of {args.limit} files (nothing recomputed)."]
        _common.write_results("batch_throughput", result, "\n".join(md),
                              regenerate=result["command"])
        print("\n".join(md))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
