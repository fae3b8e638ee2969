"""Before a batch runs: outputs an earlier run wrote with other settings, found in one pass.

A re-run with changed parameters would otherwise fail file by file ("already exists; it was
written for another input or other parameters"), once per output. :func:`check_earlier_outputs`
reads the provenance each existing label file carries (:func:`physeg.io.read_provenance`, its
metadata only: no input is hashed and no pixel decoded) and, when any was written with another
method, other parameters or another seed, raises one error naming the change and the fix
before any work. An output whose settings match but whose input changed is still the worker's
to report (only the input's digest can tell, and hashing every input here would double the
reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from . import io as pio

__all__ = ["check_earlier_outputs"]


def _settings(method: Any, params: Any, seed: Any) -> str:
    # JSON both sides: the provenance went through JSON (tuples became lists, keys strings)
    return json.dumps({"method": method, "params": params, "seed": seed}, sort_keys=True,
                      default=str)


def check_earlier_outputs(jobs: Sequence[Any], outdir: Path) -> None:
    """Raise ``FileExistsError`` (one line) when existing outputs of ``jobs`` were written
    with other settings and the jobs may not overwrite them; jobs with ``overwrite`` and
    outputs without physeg provenance (the worker reports those) are left alone."""
    stale = []
    for job in jobs:
        if job is None or job.overwrite or not Path(job.output).is_file():
            continue
        try:
            prov = pio.read_provenance(job.output)
        except (OSError, ValueError):  # unreadable: the worker reports it with its reason
            continue
        if not prov or "params" not in prov:
            continue
        if _settings(prov.get("method"), prov.get("params"), prov.get("seed")) != _settings(
                job.method, job.params, job.seed):
            stale.append((job, prov))
    if not stale:
        return
    job, prov = stale[0]
    before = f"{prov.get('method')} {prov.get('params')} seed {prov.get('seed')}"
    now = f"{job.method} {job.params} seed {job.seed}"
    n = len([j for j in jobs if j is not None])
    raise FileExistsError(
        f"{len(stale)} of the {n} output(s) in {outdir} were written with other settings "
        f"(e.g. {job.output}: {before}; this run: {now}); nothing was done. Use --overwrite "
        "(overwrite=True) to replace them, or choose another output folder."
    )
