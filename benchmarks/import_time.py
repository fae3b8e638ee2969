"""Start-up time of ``import physeg`` and ``physeg --help`` (target: import < 0.5 s).

Measures: each command runs ``--repeats`` times in a fresh subprocess; the median wall time
is reported together with the median of ``python -c pass`` measured in the same run (the
interpreter's own start-up, an anchor that makes numbers from a busy machine comparable).
The "net" column subtracts that anchor.

Regenerate::

    python benchmarks/import_time.py --repeats 7     # [--limit N]: alias of --repeats

Results: ``benchmarks/results/import_time.json`` and ``import_time.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

TARGET_S = 0.5


def _time(cmd: list[str], repeats: int) -> list[float]:
    times = []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
        times.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {res.stderr.decode()[-500:]}")
    return times


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--limit", type=int, default=None, help="alias of --repeats")
    args = ap.parse_args(argv)
    repeats = max(1, args.limit or args.repeats)
    py = sys.executable
    # The console script next to this interpreter (a pyenv shim on PATH adds ~0.3 s of bash).
    exe = str(Path(py).with_name("physeg"))
    if not Path(exe).exists():
        exe = shutil.which("physeg") or exe
    cases = {
        "python -c pass (anchor)": [py, "-c", "pass"],
        "python -c 'import numpy'": [py, "-c", "import numpy"],
        "python -c 'import physeg'": [py, "-c", "import physeg"],
        "physeg --help": [exe, "--help"],
        "physeg methods": [exe, "methods"],
    }
    # Interleave the cases so that load changes hit all of them alike.
    raw: dict[str, list[float]] = {k: [] for k in cases}
    _time(cases["python -c 'import physeg'"], 1)  # warm the file cache
    for _ in range(repeats):
        for name, cmd in cases.items():
            raw[name] += _time(cmd, 1)
    anchor = statistics.median(raw["python -c pass (anchor)"])
    rows = []
    for name, ts in raw.items():
        med = statistics.median(ts)
        rows.append({"command": name, "median_s": round(med, 4), "min_s": round(min(ts), 4),
                     "net_s": round(med - anchor, 4), "ratio_to_anchor": round(med / anchor, 2),
                     "runs": len(ts)})
    imp = next(r for r in rows if r["command"] == "python -c 'import physeg'")
    doc = {
        "benchmark": "import_time",
        "repeats": repeats,
        "target_import_s": TARGET_S,
        "import_physeg_net_s": imp["net_s"],
        "import_physeg_meets_target": imp["median_s"] < TARGET_S,
        "rows": rows,
        **{k: v for k, v in _common.environment().items() if k != "load_average"},
    }
    lines = [
        "# Start-up time",
        "",
        f"Median of {repeats} fresh subprocesses per command (interleaved), "
        f"{doc['date_utc']}, Python {doc['python']}, {doc['cpus']} CPUs (shared, noisy).",
        "`net` subtracts the interpreter start-up (`python -c pass`, same run).",
        "",
        "| command | median (s) | min (s) | net (s) | x anchor |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| `{r['command']}` | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{r['net_s']:.3f} | {r['ratio_to_anchor']:.2f} |")
    lines += ["", f"Target: `import physeg` under {TARGET_S} s — "
              + ("met" if doc["import_physeg_meets_target"] else "NOT met") + "."]
    _common.write_results("import_time", doc, "\n".join(lines),
                          regenerate=_common.command(__file__, argv))
    print("\n".join(lines))
    return doc


if __name__ == "__main__":
    main()
