"""Helpers shared by the benchmark scripts: paths, the dataset-folder argument, result files.

Not a benchmark. ``REPO`` and ``RESULTS`` are the repository root and
``benchmarks/results``; datasets are never inside the repository: their folder comes from a
``--data``-style argument, whose default is :func:`physeg.data.datasets.data_root`
(``$PHYSEG_DATA``, then ``../shared/data`` beside the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_thread() -> None:
    """Limit BLAS / OpenMP to one thread (``THREAD_VARIABLES`` set to 1 unless already set).

    Call it before numpy is imported: the libraries read these variables when they load."""
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, "1")


def command(script: str, argv: list[str] | None = None) -> str:
    """The command line that ran ``benchmarks/<script>``: ``python benchmarks/<script> ARGS``
    (``argv`` default: ``sys.argv[1:]``)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"benchmarks/{Path(script).name}", *args])


def with_regenerate(md: str, cmd: str, note: str = "") -> str:
    """``md`` with a ``Regenerate: `cmd` note`` paragraph after its first line (the title)."""
    head, _, rest = md.partition("\n")
    line = f"Regenerate: `{cmd}`" + (f" {note}" if note else "")
    return f"{head}\n\n{line}\n" + (rest if rest.startswith("\n") else "\n" + rest)


def default_data(name: str | None = None) -> Path:
    """Dataset folder ``name`` from ``$PHYSEG_DATA`` (see :func:`physeg.data.datasets.data_root`);
    a path that does not exist when no dataset root is found, so that the script's own check
    reports it."""
    from physeg.data.datasets import data_root

    try:
        return data_root(name)
    except (FileNotFoundError, ValueError, OSError):
        env = os.environ.get("PHYSEG_DATA")
        return Path(env or "PHYSEG_DATA-not-set") / (name or "")


def add_data_argument(ap: argparse.ArgumentParser, name: str | None = None,
                      flag: str = "--data", what: str | None = None) -> None:
    """Add ``flag`` (a dataset folder, :class:`~pathlib.Path`) defaulting to
    :func:`default_data` of ``name``."""
    ap.add_argument(flag, type=Path, default=default_data(name),
                    help=f"{what or (name or 'datasets') + ' folder'} (default: "
                         f"$PHYSEG_DATA/{name or ''}, see physeg.data.datasets.data_root)")


def environment() -> dict[str, Any]:
    """Python version, machine, CPU model and count, load average and UTC time of a run
    (the CPU model because absolute seconds differ ~3x between the machines sessions get)."""
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpu_model": cpu_model(), "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def cpu_model() -> str:
    """The first ``model name`` of /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_results(stem: str, data: Any, md: str, out: Path = RESULTS,
                  regenerate: str | None = None) -> tuple[Path, Path]:
    """Write ``out/<stem>.json`` (indented; numpy scalars as float) and ``out/<stem>.md``.

    ``regenerate``: the command that produced them, written as a ``Regenerate:`` line under
    the Markdown title (:func:`with_regenerate`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pj, pm = out / f"{stem}.json", out / f"{stem}.md"
    pj.write_text(json.dumps(data, indent=2, default=float) + "\n")
    if regenerate:
        md = with_regenerate(md, regenerate)
    pm.write_text(md if md.endswith("\n") else md + "\n")
    return pj, pm
