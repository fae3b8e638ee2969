"""Segment many files: one pure per-file function, any executor, resumable, logged.

The unit of work is :func:`segment_file`: it reads one input, segments it, writes the label
image atomically and returns a small JSON-able record. It touches no shared state, so the same
function runs serially, in a :class:`concurrent.futures.ProcessPoolExecutor` (``--jobs N``) or
on a dask cluster (any :class:`concurrent.futures.Executor`, or a ``distributed.Client``), via
:func:`physeg._runner.run_tasks`. :func:`plan_batch` validates everything once (method, model,
parameters from the schema, colour axis, suffix, seed) and names the outputs; :func:`run_plan`
runs the plan and appends each record to a JSON-lines log as it arrives. :func:`segment_many`
is the two in one call.

Choices made where the issue left room
--------------------------------------
* **Provenance in the output.** Each label file carries, in its metadata
  (:func:`physeg.io.write_labels` ``provenance=``), the SHA-256 of the input's bytes and a
  digest of the method, its validated parameters, the model file's digest, the seed and the
  colour handling. Written atomically with the pixels, a crash leaves a complete,
  self-describing output or none. A re-run skips an output whose provenance matches (status
  ``skipped``); the log is a record, never the source of truth.
* **An existing output that does not match** is never silently replaced: without
  ``overwrite`` it is ``failed`` with the fix in the message. No output is ever written over
  an input (same resolved path or inode), even with ``overwrite``.
* **Seeds.** The seed (default 0) is passed as ``rng`` to every file, so a file's labels equal
  ``physeg.segment(image, rng=seed)`` whatever the executor or the order. A ``Generator``
  contributes one draw; ``rng=None`` draws fresh entropy per file.
* **Output names.** ``<stem>.png`` (``suffix=".tif"`` for TIFF; volumes always ``.tif``); a
  second input with the same stem is reported as failed. Overlays go to ``overlays/<stem>.png``.
* **Colour** follows the one policy of :mod:`physeg._validate` (:func:`prepare_colour`).
* **Log records** (one JSON object per line, flushed per file): ``run`` (versions, executor,
  parameters), one ``file`` record per input (status ``done`` / ``skipped`` / ``failed``,
  input SHA-256, shape, dtype, label count, timings, worker, error) and ``summary``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import io as pio
from ._runner import as_executor, run_tasks, versions
from ._validate import channels_last, parse_channel_axis, prepare_colour
from .api import get_method, load, run_validated
from .overlay import write_overlay

__all__ = [
    "Job",
    "Plan",
    "BatchResult",
    "expand_inputs",
    "overlay_path_for",
    "segment_file",
    "plan_batch",
    "run_plan",
    "segment_many",
    "read_log",
]

LOG_NAME = "physeg-log.jsonl"


# --------------------------------------------------------------------------- inputs / outputs


def expand_inputs(inputs: Any) -> list[Path]:
    """Files, folders (their image files, sorted) and glob patterns -> image paths.

    See :func:`physeg.data.datasets.find_images` (the same rules as the CLI).
    """
    from .data.datasets import find_images

    return find_images(inputs)


def overlay_path_for(input_path: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """Overlay PNG for one input: ``outdir/overlays/<stem>.png`` (a sub-folder, so that
    ``physeg evaluate OUTDIR GT`` pairs only label files)."""
    return Path(outdir) / "overlays" / (Path(input_path).stem + ".png")


# --------------------------------------------------------------------------- the unit of work


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything :func:`segment_file` needs for one file (picklable, JSON-able).

    Parameters
    ----------
    input, output : str
        Input image path and output label path (``.png`` or ``.tif``).
    method : str
        Registered method name (the model's method when ``model`` is given).
    params : dict
        Method parameters, already converted by the method's schema (:func:`plan_batch`).
    seed : int or None
        ``rng`` passed to the method (the same for every file, so the labels do not depend on
        the order or the executor); None draws fresh entropy.
    model : str or None
        Path of a saved model (``physeg.load``); its SHA-256 is part of the provenance.
    model_sha256 : str or None
        Digest of the model file.
    overwrite : bool
        Replace an existing output whose provenance does not match.
    channel_axis : int, None or "auto"
        Colour axis of the input (:func:`physeg._validate.prepare_colour`).
    overlay : str or None
        Also write an RGB overlay (:func:`physeg.overlay.write_overlay`) to this path.
    protect : tuple of str
        Files that must never be written (the inputs of the batch); the input itself is
        always protected.
    """

    input: str
    output: str
    method: str
    params: dict[str, Any]
    seed: int | None = None
    model: str | None = None
    model_sha256: str | None = None
    overwrite: bool = False
    channel_axis: int | str | None = "auto"
    overlay: str | None = None
    protect: tuple[str, ...] = ()

    def key(self, input_sha256: str) -> str:
        """Digest identifying (input bytes, method, parameters, model, seed, colour handling)."""
        blob = json.dumps(
            {
                "input_sha256": input_sha256,
                "method": self.method,
                "params": self.params,
                "model_sha256": self.model_sha256,
                "seed": self.seed,
                "channel_axis": self.channel_axis,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _load_model(path: str, sha: str | None):  # sha in the key: a changed file reloads
    # The one model cache: each worker process loads a model once per file digest.
    return load(path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _accepts_rng(func: Callable[..., Any]) -> bool:
    import inspect

    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return "rng" in sig.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    )


def segment_file(job: Job) -> dict[str, Any]:
    """Read, segment, write one file; return its log record. Never raises for a bad file.

    Steps: hash the input; if ``job.output`` exists and its provenance matches, return
    ``status="skipped"``; otherwise read the image (:func:`physeg.io.read_image`), prepare
    its colour (:func:`physeg._validate.prepare_colour`), segment it (``physeg.segment`` or
    the model's ``predict``), write the labels atomically with provenance (and the overlay
    when asked), and return ``status="done"``. Any exception (unreadable file, invalid image,
    method error, an output that exists without ``overwrite``, an output that is an input)
    gives ``status="failed"`` with the error's type and message, and writes nothing.

    Returns
    -------
    dict
        JSON-able record (see the module notes for the fields).
    """
    t0 = time.perf_counter()
    rec: dict[str, Any] = {
        "event": "file",
        "input": job.input,
        "output": job.output,
        "overlay": None,
        "method": job.method,
        "params": job.params,
        "seed": job.seed,
        "model": job.model,
        "status": "failed",
        "error": None,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    timing = {"read": 0.0, "segment": 0.0, "write": 0.0}
    try:
        sha = pio.file_sha256(job.input)
        rec["input_sha256"] = sha
        key = job.key(sha)
        out = Path(job.output)
        targets = [out] + ([Path(job.overlay)] if job.overlay else [])
        protect = (job.input,) + tuple(job.protect)
        for target in targets:  # before any work: an input is never a target
            pio.check_writable(target, overwrite=True, protect=protect)
        if out.exists():
            prov = pio.read_provenance(out)
            ov_ok = job.overlay is None or Path(job.overlay).exists()
            if prov is not None and prov.get("key") == key and ov_ok:
                rec.update(status="skipped", labels=prov.get("labels"), shape=prov.get("shape"),
                           overlay=job.overlay)
                return rec
        for target in targets:
            if target.exists() and not job.overwrite:
                prov = pio.read_provenance(target) if target == out else None
                why = ("; it was written for another input or other parameters" if prov
                       else "")
                raise FileExistsError(
                    f"output {target} already exists{why}; use --overwrite "
                    "(overwrite=True) to replace it, or choose another output folder."
                )
        t = time.perf_counter()
        image = pio.read_image(job.input)
        timing["read"] = time.perf_counter() - t
        rec["shape"] = list(image.shape)
        rec["dtype"] = str(image.dtype)
        t = time.perf_counter()
        m = get_method(job.method)
        arr, cax = prepare_colour(image, m.supports_multichannel, job.channel_axis)
        if job.model is not None:
            model = _load_model(job.model, job.model_sha256)
            kwargs = dict(job.params)
            if job.seed is not None and _accepts_rng(model.predict):
                kwargs["rng"] = job.seed
            labels = model.predict(arr, channel_axis=cax, **kwargs)
        else:
            labels = run_validated(m, arr, channel_axis=cax, rng=job.seed, params=job.params)
        rec["channel_axis"] = cax
        timing["segment"] = time.perf_counter() - t
        labels = np.asarray(labels)
        rec["labels"] = int(np.unique(labels).size)
        t = time.perf_counter()
        pio.write_labels(out, labels, overwrite=job.overwrite, protect=protect,
                         provenance={"key": key, "input_sha256": sha, "input": job.input,
                                     "method": rec["method"], "params": job.params,
                                     "seed": job.seed, "labels": rec["labels"],
                                     "shape": list(labels.shape)})
        if job.overlay:
            write_overlay(job.overlay, channels_last(image, job.channel_axis), labels,
                          overwrite=job.overwrite, protect=protect)
            rec["overlay"] = job.overlay
        timing["write"] = time.perf_counter() - t
        rec["status"] = "done"
    except Exception as exc:  # noqa: BLE001 - one bad file is reported, never fatal
        rec["error"] = {"type": type(exc).__name__, "message": str(exc),
                        "where": traceback.format_exc(limit=3).strip().splitlines()[-3:]}
    finally:
        timing["total"] = time.perf_counter() - t0
        rec["seconds"] = {k: round(v, 6) for k, v in timing.items()}
        rec["time"] = _now()
    return rec


# --------------------------------------------------------------------------- many files


@dataclasses.dataclass
class BatchResult:
    """Records of one :func:`segment_many` run (in input order) and where the log is."""

    records: list[dict[str, Any]]
    log: Path | None
    seconds: float

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return self.count("failed") == 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    def summary(self) -> dict[str, Any]:
        return {"event": "summary", "files": len(self.records), "done": self.count("done"),
                "skipped": self.count("skipped"), "failed": self.count("failed"),
                "seconds": round(self.seconds, 4), "time": _now()}


def _seed(rng: Any) -> int | None:
    """The ``rng`` passed to every file: an int seed as is, one draw from a Generator."""
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1))
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and int(rng) >= 0:
        return int(rng)
    raise TypeError(
        f"rng must be None, a non-negative int seed or a numpy.random.Generator; got {rng!r}."
    )


def _protect_map(files: list[Path]) -> tuple[dict[str, str], dict[tuple[int, int], str]]:
    """Inputs by resolved path and by (device, inode), to protect them from any write."""
    resolved: dict[str, str] = {}
    by_inode: dict[tuple[int, int], str] = {}
    for f in files:
        try:
            resolved[str(f.resolve())] = str(f)
            st = f.stat()
            by_inode[(st.st_dev, st.st_ino)] = str(f)
        except OSError:
            continue
    return resolved, by_inode


def _protect_for(target: Path, resolved: dict[str, str],
                 by_inode: dict[tuple[int, int], str]) -> list[str]:
    """The inputs that ``target`` would hit (same resolved path or same inode)."""
    out = []
    try:
        key = str(target.resolve())
    except OSError:
        return out
    if key in resolved:
        out.append(resolved[key])
    try:
        st = target.stat()
    except OSError:
        return out
    if (st.st_dev, st.st_ino) in by_inode:
        out.append(by_inode[(st.st_dev, st.st_ino)])
    return out


class _Log:
    """Append-only JSON-lines log; one line per record, flushed (and fsynced) at once."""

    def __init__(self, path: Path | None):
        self.path = path
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated batch (from :func:`plan_batch`): one job per input, in input order.

    ``jobs[i]`` is None for an input that cannot run (its record is in ``early[i]``, e.g. a
    second input writing the same output). ``method`` and ``params`` are the resolved method
    name and the schema-converted parameters.
    """

    jobs: list[Job | None]
    early: dict[int, dict[str, Any]]
    outdir: Path
    method: str
    params: dict[str, Any]
    model: str | None
    seed: int | None
    log: Path | None


def plan_batch(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    method: str | None = None,
    params: dict[str, Any] | None = None,
    model: str | os.PathLike | None = None,
    rng: Any = 0,
    overwrite: bool = False,
    overlay: bool = False,
    log: str | os.PathLike | None | bool = True,
    suffix: str = ".png",
    channel_axis: int | str | None = "auto",
) -> Plan:
    """Validate a batch once and name its outputs; nothing is read, written or created.

    See :func:`segment_many` for the parameters (``method=None`` means ``"otsu"``, or the
    model's method). Every usage error is raised here, before any work.

    Raises
    ------
    ValueError, FileNotFoundError, TypeError
        Unknown method, a method that needs a model, ``method`` conflicting with the model,
        invalid parameters, a bad suffix or channel axis, no inputs.
    """
    paths = expand_inputs(inputs)
    outdir = Path(outdir)
    model_sha = None
    if model is not None:
        model = str(model)
        if not Path(model).is_file():
            raise FileNotFoundError(f"model file {model!r} does not exist.")
        model_sha = pio.file_sha256(model)
        fitted_for = _load_model(model, model_sha).method
        if method is not None and get_method(method).name != fitted_for:
            raise ValueError(
                f"method {method!r} conflicts with the model, which was fitted for "
                f"{fitted_for!r}; leave out the method (--method)."
            )
        m = get_method(fitted_for)
    else:
        m = get_method(method or "otsu")
        m.check_segments_without_model()
    params = m.validate(dict(params or {}))  # the one validation: workers get these values
    channel_axis = parse_channel_axis(channel_axis)
    suffix = suffix if suffix.startswith(".") else "." + suffix
    if suffix.lower() not in pio.LABEL_SUFFIXES:
        raise ValueError(f"suffix must be one of {', '.join(pio.LABEL_SUFFIXES)}; got {suffix!r}.")
    seed = _seed(rng)
    resolved, by_inode = _protect_map(paths)
    jobs: list[Job | None] = []
    early: dict[int, dict[str, Any]] = {}
    taken: dict[str, str] = {}
    for i, p in enumerate(paths):
        try:
            out = pio.output_path_for(p, outdir, suffix)
        except Exception:  # noqa: BLE001 - unreadable TIFF header: the worker reports it
            out = outdir / (p.stem + suffix)
        key = str(out.resolve())
        if key in taken:
            jobs.append(None)
            early[i] = {"event": "file", "input": str(p), "output": None, "method": m.name,
                        "params": params, "seed": seed, "status": "failed", "time": _now(),
                        "error": {"type": "ValueError",
                                  "message": f"writes the same output {out} as {taken[key]}; "
                                  "segment inputs with the same name into different folders."}}
            continue
        taken[key] = str(p)
        ov = overlay_path_for(p, outdir) if overlay else None
        protect = _protect_for(out, resolved, by_inode)
        if ov is not None:
            protect += _protect_for(ov, resolved, by_inode)
        jobs.append(Job(input=str(p), output=str(out), method=m.name, params=params,
                        seed=seed, model=model, model_sha256=model_sha, overwrite=overwrite,
                        channel_axis=channel_axis, overlay=None if ov is None else str(ov),
                        protect=tuple(protect)))
    log_path = (outdir / LOG_NAME) if log is True else (Path(log) if log else None)
    return Plan(jobs, early, outdir, m.name, params, model, seed, log_path)


def run_plan(plan: Plan, *, executor: Any = None,
             progress: Callable[[dict[str, Any]], None] | None = None) -> BatchResult:
    """Run a :func:`plan_batch` plan: one :func:`segment_file` per job, logged as it arrives.

    ``executor`` and ``progress`` as in :func:`segment_many`; creates the output folder.
    """
    ex = as_executor(executor)
    plan.outdir.mkdir(parents=True, exist_ok=True)
    pio.remove_stale_temps(plan.outdir)
    pio.remove_stale_temps(plan.outdir / "overlays")
    logger = _Log(plan.log)
    logger.write({"event": "run", "time": _now(), "method": plan.method,
                  "params": plan.params, "model": plan.model, "seed": plan.seed,
                  "files": len(plan.jobs), "outdir": str(plan.outdir),
                  "executor": type(ex).__name__ if ex is not None else "serial",
                  "argv": sys.argv, "versions": versions()})
    t0 = time.perf_counter()
    records: dict[int, dict[str, Any]] = {}

    def accept(i: int, rec: dict[str, Any]) -> None:
        records[i] = rec
        logger.write(rec)
        if progress is not None:
            progress(rec)

    def crashed(job: Job, exc: BaseException) -> dict[str, Any]:
        return {"event": "file", "input": job.input, "output": job.output,
                "method": plan.method, "params": plan.params, "seed": plan.seed,
                "status": "failed", "time": _now(),
                "error": {"type": type(exc).__name__, "message": str(exc)}}

    try:
        for i, rec in plan.early.items():
            accept(i, rec)
        todo = [(i, job) for i, job in enumerate(plan.jobs) if job is not None]
        run_tasks(segment_file, todo, ex, accept, crashed)
    finally:
        result = BatchResult([records[i] for i in sorted(records)], plan.log,
                             time.perf_counter() - t0)
        summary = result.summary()
        if len(records) < len(plan.jobs):
            summary["interrupted"] = True
            summary["not_finished"] = len(plan.jobs) - len(records)
        logger.write(summary)
        logger.close()
    return result


def segment_many(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    method: str | None = None,
    params: dict[str, Any] | None = None,
    model: str | os.PathLike | None = None,
    executor: Any = None,
    rng: Any = 0,
    overwrite: bool = False,
    overlay: bool = False,
    log: str | os.PathLike | None | bool = True,
    suffix: str = ".png",
    channel_axis: int | str | None = "auto",
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> BatchResult:
    """Segment every input file into ``outdir``; resumable and logged.

    Parameters
    ----------
    inputs : path, folder, glob, or a sequence of them
        Image files to segment (folders contribute their image files, sorted by name).
    outdir : path
        Output folder (created). Outputs are ``<stem><suffix>``; volumes get ``.tif``.
    method : str, optional
        Registered method name (``physeg methods``); default ``"otsu"``, or the model's.
    params : dict, optional
        Method parameters (strings as on the CLI); validated against the method's schema
        once, before any work starts, so a typo fails at once rather than once per file.
    model : path, optional
        A saved model (``physeg.load``); its method is used.
    executor : concurrent.futures.Executor, distributed.Client or None
        Where the per-file function runs. None runs serially in this process. A
        ``ProcessPoolExecutor(n)`` gives n worker processes; a ``distributed.Client`` (or its
        ``get_executor()``) runs on a dask cluster. The executor is not shut down here.
    rng : None, int or numpy.random.Generator, default 0
        Seed passed as ``rng`` to every file (a Generator contributes one draw), so the
        labels do not depend on the executor or the order.
    overwrite : bool, default False
        Replace outputs that exist but were produced from another input or other parameters
        (or not by physeg). Outputs whose provenance matches are always skipped (resume).
        Inputs are never written, even with ``overwrite``.
    overlay : bool, default False
        Also write ``outdir/overlays/<stem>.png`` (:func:`physeg.overlay.write_overlay`).
    log : True, path, or None/False, default True
        JSON-lines log: True appends to ``outdir/physeg-log.jsonl``; a path appends there;
        None/False writes none.
    suffix : {".png", ".tif", ".tiff"}
        Label file type for 2D results.
    channel_axis : int, None, "auto" or the CLI's text
        Colour axis of the inputs (:func:`physeg._validate.colour_axis`).
    progress : callable, optional
        Called with each record as it arrives (the CLI's progress bar).

    Returns
    -------
    BatchResult
        Records in input order, with counts; ``result.ok`` is False when any file failed.

    Raises
    ------
    ValueError, FileNotFoundError, TypeError
        Unknown method or invalid parameters, no inputs, a bad executor: before any work.
    """
    plan = plan_batch(inputs, outdir, method=method, params=params, model=model, rng=rng,
                      overwrite=overwrite, overlay=overlay, log=log, suffix=suffix,
                      channel_axis=channel_axis)
    return run_plan(plan, executor=executor, progress=progress)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines log; a torn last line (killed writer) is ignored."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
