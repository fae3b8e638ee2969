"""Blockwise ``heat`` on a synthetic image larger than comfortable memory (20000 x 20000).

Regenerate::

    python benchmarks/blockwise_large.py --size 20000 --chunks 2048 --workers 2 --check 2000 \
        --workdir SCRATCH      # [--limit N] [--keep]

``--workdir`` is a scratch folder for the zarr arrays (a few GB; default: a fresh folder in
the temporary directory, deleted at the end unless ``--keep``).

Measures:

1. Writes a float32 zarr image (size²; 1.6 GB at 20000²) chunk by chunk, never whole in memory:
   bright discs (0.75) on a dark background (0.25), one disc per 500-px cell with a seeded
   radius and offset, plus Gaussian noise σ = 0.2 drawn per chunk from a seeded generator.
2. Runs :func:`physeg.families.heat.blockwise.segment_blockwise` (``heat``, defaults) into a zarr label array
   in a *fresh child process*, so its peak resident memory (``VmHWM``) measures the
   segmentation alone; reports time per phase and the peak.
3. Scores the labels against the exact disc mask, chunk by chunk (pixel error rate, Dice).
4. Equivalence at scale: on a ``--check``² crop, blockwise (1024-px blocks) against
   :func:`physeg.families.heat.blockwise.heat_fixed_means` in memory with the same means: differing pixels,
   with the in-memory run's time and peak memory (another child process) for comparison.

``--limit N`` caps the size at N (quick runs).

Results: ``benchmarks/results/blockwise_large.json`` and ``blockwise_large.md``.
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

CELL = 500


def _disc_table(size: int, seed: int):
    n = -(-size // CELL)
    rng = np.random.default_rng(seed)
    radius = rng.uniform(60, 200, (n, n))
    off = rng.uniform(-40, 40, (n, n, 2))
    return radius, off


def truth_block(r0: int, r1: int, c0: int, c1: int, radius, off) -> np.ndarray:
    yy = np.arange(r0, r1)[:, None]
    xx = np.arange(c0, c1)[None, :]
    i, j = yy // CELL, xx // CELL
    cy = i * CELL + CELL / 2 + off[i, j, 0]
    cx = j * CELL + CELL / 2 + off[i, j, 1]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < radius[i, j] ** 2


def write_image(path: Path, size: int, chunk: int, seed: int = 0) -> float:
    import zarr

    radius, off = _disc_table(size, seed)
    z = zarr.open(str(path), mode="w", shape=(size, size), chunks=(chunk, chunk),
                  dtype="float32")
    t = time.perf_counter()
    for bi, r0 in enumerate(range(0, size, chunk)):
        for bj, c0 in enumerate(range(0, size, chunk)):
            r1, c1 = min(r0 + chunk, size), min(c0 + chunk, size)
            m = truth_block(r0, r1, c0, c1, radius, off)
            rng = np.random.default_rng([seed, bi, bj])
            block = (0.25 + 0.5 * m + rng.normal(0, 0.2, m.shape)).astype(np.float32)
            z[r0:r1, c0:c1] = block
    return time.perf_counter() - t


def child_segment(args) -> None:
    from physeg.families.heat.blockwise import peak_rss_mb, segment_blockwise

    t = time.perf_counter()
    _, info = segment_blockwise(args.image, args.out, chunks=args.chunks,
                                num_workers=args.workers, return_info=True, overwrite=True,
                                tmpdir=args.tmp)
    info["wall_s"] = time.perf_counter() - t
    info["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(info))


def child_inmemory(args) -> None:
    import zarr

    from physeg.families.heat.blockwise import heat_fixed_means, peak_rss_mb

    img = np.asarray(zarr.open(args.image, mode="r")[: args.check, : args.check])
    means = json.loads(args.means)
    t = time.perf_counter()
    lab = heat_fixed_means(img, means, center=json.loads(args.center), scale=args.scale)
    wall = time.perf_counter() - t
    np.save(args.out, lab)
    print("RESULT " + json.dumps({"wall_s": wall, "peak_rss_mb": peak_rss_mb()}))


def _run_child(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{proc.stdout}\n{proc.stderr}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def score(label_path: Path, size: int, chunk: int, seed: int = 0) -> dict:
    # Not physeg.metrics.dice: neither the labels nor the truth fit in memory, so the
    # counts are summed chunk by chunk (same definition, 2TP / (2TP + FP + FN), label 1).
    import zarr

    radius, off = _disc_table(size, seed)
    z = zarr.open(str(label_path), mode="r")
    tp = fp = fn = 0
    for r0 in range(0, size, chunk):
        for c0 in range(0, size, chunk):
            r1, c1 = min(r0 + chunk, size), min(c0 + chunk, size)
            m = truth_block(r0, r1, c0, c1, radius, off)
            lab = np.asarray(z[r0:r1, c0:c1]) == 1
            tp += int(np.count_nonzero(lab & m))
            fp += int(np.count_nonzero(lab & ~m))
            fn += int(np.count_nonzero(~lab & m))
    return {"dice": 2 * tp / (2 * tp + fp + fn), "pixel_error": (fp + fn) / size**2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--limit", type=int, default=None, help="cap the size (quick runs)")
    ap.add_argument("--chunks", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--check", type=int, default=3000, help="crop for the equivalence check")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--phase", default="main", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--means", help=argparse.SUPPRESS)
    ap.add_argument("--center", help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase == "segment":
        return child_segment(args)
    if args.phase == "inmemory":
        return child_inmemory(args)

    size = min(args.size, args.limit) if args.limit else args.size
    scratch = Path(tempfile.gettempdir()) / f"physeg-blockwise-bench-{os.getpid()}"
    work = Path(args.workdir or scratch)
    work.mkdir(parents=True, exist_ok=True)
    img_path, lab_path = work / "image.zarr", work / "labels.zarr"
    print(f"writing {size}x{size} float32 ({size * size * 4 / 2**30:.2f} GiB) to {img_path}",
          flush=True)
    t_write = write_image(img_path, size, args.chunks)
    print(f"  {t_write:.1f} s; segmenting blockwise in a child process", flush=True)
    info = _run_child(["--phase", "segment", "--image", str(img_path), "--out", str(lab_path),
                       "--chunks", str(args.chunks), "--workers", str(args.workers),
                       "--tmp", str(work)])
    print(f"  {info['wall_s']:.1f} s, peak RSS {info['peak_rss_mb']:.0f} MiB, "
          f"{info['iterations']} passes", flush=True)
    acc = score(lab_path, size, args.chunks)
    print(f"  Dice {acc['dice']:.5f}, pixel error {acc['pixel_error']:.2e}", flush=True)

    check = None
    if args.check and args.check <= size:
        import zarr

        from physeg.families.heat.blockwise import segment_blockwise

        crop = np.asarray(zarr.open(str(img_path), mode="r")[: args.check, : args.check])
        cpath = work / "crop.npy"
        np.save(cpath, crop)
        del crop
        t = time.perf_counter()
        blab, binfo = segment_blockwise(cpath, chunks=1024, num_workers=args.workers,
                                        return_info=True)
        t_b = time.perf_counter() - t
        mem = _run_child(["--phase", "inmemory", "--image", str(img_path),
                          "--out", str(work / "ref.npy"), "--check", str(args.check),
                          "--means", json.dumps(binfo["means"]),
                          "--center", json.dumps(binfo["center"]),
                          "--scale", repr(binfo["scale"])])
        ref = np.load(work / "ref.npy")
        check = {"size": args.check, "blocks": binfo["blocks"], "chunks": 1024,
                 "differing_pixels": int(np.count_nonzero(ref != blab)),
                 "blockwise_s": t_b, "in_memory_s": mem["wall_s"],
                 "in_memory_peak_rss_mb": mem["peak_rss_mb"]}
        print(f"  check {args.check}²: {check['differing_pixels']} differing pixels", flush=True)

    result = {
        "benchmark": "blockwise_large",
        "command": _common.command(__file__),
        "size": size, "image_gib": size * size * 4 / 2**30, "chunks": args.chunks,
        "workers": args.workers, "cpu_count": os.cpu_count(),
        "write_input_s": t_write, "segment": info, "accuracy": acc, "equivalence_check": check,
    }
    s = info["seconds"]
    md = [
        "# Blockwise heat on a large synthetic image",
        "",
        f"Command: `{result['command']}` (machine: {os.cpu_count()} shared CPU cores; timings "
        "are noisy).",
        "",
        "| image | blocks | halo | passes | total s | stats s | means s | iterate s | "
        "write s | peak RSS MiB | Dice | pixel error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {size}² float32 ({result['image_gib']:.2f} GiB), zarr | {info['blocks']} × "
        f"{info['chunks'][0]}² | {info['halo']} | {info['iterations']} | {info['wall_s']:.1f} | "
        f"{s['stats']:.1f} | {s['means']:.1f} | {s['iterate']:.1f} | {s['write']:.1f} | "
        f"{info['peak_rss_mb']:.0f} | {acc['dice']:.5f} | {acc['pixel_error']:.2e} |",
        "",
        f"Changed pixels per pass: {info['changed']}; blocks recomputed per pass: "
        f"{info['blocks_recomputed']}.",
    ]
    if check:
        md += [
            "",
            f"Equivalence at scale: {check['size']}² crop, blockwise ({check['blocks']} blocks of "
            f"1024²) vs `heat_fixed_means` in memory with the same means: "
            f"**{check['differing_pixels']} differing pixels**; in-memory time "
            f"{check['in_memory_s']:.1f} s, peak RSS {check['in_memory_peak_rss_mb']:.0f} MiB "
            f"(blockwise {check['blockwise_s']:.1f} s).",
        ]
    _common.write_results("blockwise_large", result, "\n".join(md),
                          regenerate=result["command"])
    print("\n".join(md))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
