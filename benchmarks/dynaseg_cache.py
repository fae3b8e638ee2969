"""Tuning cache for DynaSeg's region post-processing (BSDS500 train/val images only).

Runs the network of a preset once per image and saves what the post-processing needs, so
that merge rules can be swept in seconds without retraining:

* ``clusters``: the full-resolution cluster ids (argmax of the response), uint8;
* ``response``: the full-resolution normalised response ``r'`` (rows, cols, q), float16;
* ``q``: the label count per iteration, ``cpu``: process CPU seconds of the call.

The Lab image is recomputed from the JPEG when needed. Files go to ``--out`` (default
``/tmp/dyncache/<preset>_s<seed>``), one ``<id>.npz`` per image; existing files are
skipped, so the run can be interrupted and resumed. Only ``orig_split`` train or val rows
are ever read (``read_rows(..., split="trainval")``): the test images stay unseen.

Usage::

    python benchmarks/dynaseg_cache.py --limit 60
    python benchmarks/dynaseg_cache.py --limit 60 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "src"))

from dynaseg_bsds import load, read_rows  # noqa: E402

from physeg.families.dynaseg import segment_dynaseg  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "bsds500")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="regions")
    ap.add_argument("--min-labels", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or Path(f"/tmp/dyncache/{args.preset}_s{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    rows = read_rows(args.data, args.limit, "trainval")
    for row in rows:
        assert row["orig_split"] in ("train", "val")
        f = out / f"{row['id']}.npz"
        if f.exists():
            continue
        img, _ = load(args.data, row)
        c0 = time.process_time()
        kw = dict(preset=args.preset, variant="fsf", components=False, threads=1)
        if args.min_labels is not None:
            kw["min_labels"] = args.min_labels
        lab, info = segment_dynaseg(img, channel_axis=-1, rng=args.seed, return_info=True,
                                    **kw)
        cpu = time.process_time() - c0
        np.savez(f, clusters=lab.astype(np.uint8), response=info["response"].astype(np.float16),
                 q=np.array(info["n_labels"]), cpu=cpu)
        print(row["id"], info["iterations"], info["n_clusters"], f"{cpu:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
