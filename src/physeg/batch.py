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
  ``overwrite``, other settings are one error up front (:mod:`physeg._resume`), another input
  ``failed``. Never an output over an input (same path or inode), even with ``overwrite``.
* **Seeds.** The seed (default 0) is passed as ``rng`` to every file, so a file's labels equal
  ``physeg.segment(image, rng=seed)`` whatever the executor or the order. A ``Generator``
  contributes one draw; ``rng=None`` draws fresh entropy per file.
* **Output names.** ``<stem>.png`` (``suffix=".tif"`` for TIFF; volumes always ``.tif``); a
  second input with the same stem is reported as failed. Overlays go to ``overlays/<stem>.png``.
* **Colour** follows the one policy of :mod:`physeg._validate` (:func:`prepare_colour`),
  told by the reader how the file stores channels (:func:`physeg.io.read_image_and_axis`).
* **Concurrent runs** into one folder: an output is created no-clobber at write time
  (:mod:`physeg.io`), so the run that loses reports the file ``failed`` ("appeared
  meanwhile"), or ``skipped`` when the winner wrote the same result (same provenance key),
  whenever during the loser's work it appeared (:func:`_written_by_twin`).
* **Disk full** (``ENOSPC``) stops the run: no partial file is left, the log ends in whole
  lines, and :attr:`BatchResult.stopped` says why; a re-run resumes.
* **Size limit.** Inputs declaring more than ``max_pixels`` pixels fail before decoding
  (:data:`physeg.io.DEFAULT_MAX_PIXELS`).
* **Log records** (one JSON object per line, written whole and fsynced per file by
  :class:`physeg.io.AppendLog`; the log is never an input and never an existing non-log file
  without ``overwrite``): ``run`` (versions, executor, parameters), one ``file`` record per
  input (status ``done`` / ``skipped`` / ``failed``, input SHA-256, shape, dtype, label count,
  timings, worker, error) and ``summary``.
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
from ._resume import check_earlier_outputs
from ._runner import as_executor, run_tasks, versions
from ._validate import channels_last, parse_channel_axis, prepare_colour
from .api import get_method, load, run_validated
from .io import read_log
from .overlay import write_overlay

__all__ = ["Job", "Plan", "BatchResult", "expand_inputs", "overlay_path_for", "segment_file",
           "plan_batch", "run_plan", "segment_many", "read_log"]

LOG_NAME = "physeg-log.jsonl"


# --------------------------------------------------------------------------- inputs / outputs


def expand_inputs(inputs: Any) -> list[Path]:
    """Files, folders (their image files, sorted) and glob patterns -> image paths.

    See :func:`physeg.data.datasets.find_images` (the same rules as the CLI).
    """
    from .data.datasets import find_images

    return find_images(inputs)


def overlay_path_for(input_path: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """``outdir/overlays/<stem>.png`` (a sub-folder: ``physeg evaluate OUTDIR GT`` pairs labels)."""
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
    model, model_sha256 : str or None
        Path of a saved model (``physeg.load``) and its SHA-256 (part of the provenance).
    overwrite : bool
        Replace an existing output whose provenance does not match.
    channel_axis : int, None or "auto"
        Colour axis of the input (:func:`physeg._validate.prepare_colour`).
    overlay : str or None
        Also write an RGB overlay (:func:`physeg.overlay.write_overlay`) to this path.
    protect : tuple of str
        Inputs of the batch the outputs would hit (never written); the input itself always.
    max_pixels : int or None
        Largest input read (:func:`physeg.io.read_image`); None reads any size.
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
    max_pixels: int | None = pio.DEFAULT_MAX_PIXELS

    def key(self, input_sha256: str) -> str:
        """Digest identifying (input bytes, method, parameters, model, seed, colour handling)."""
        blob = json.dumps({"input_sha256": input_sha256, "method": self.method,
                           "params": self.params, "model_sha256": self.model_sha256,
                           "seed": self.seed, "channel_axis": self.channel_axis},
                          sort_keys=True, default=str)
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
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "rng" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def segment_file(job: Job) -> dict[str, Any]:
    """Read, segment, write one file; return its log record. Never raises for a bad file.

    Steps: hash the input; an output whose provenance matches is ``skipped``; otherwise read
    (:func:`physeg.io.read_image_and_axis`), prepare the colour, segment, write the labels
    no-clobber with provenance (and the overlay), ``done``. Any exception (unreadable or too
    large file, invalid image, method error, an output that exists or appeared meanwhile
    without ``overwrite``, an output that is an input, disk full) gives ``failed`` with the
    error's type, message and errno, and leaves no partial file.

    Returns
    -------
    dict
        JSON-able record (see the module notes for the fields).
    """
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"event": "file", "input": job.input, "output": job.output,
                           "overlay": None, "method": job.method, "params": job.params,
                           "seed": job.seed, "model": job.model, "status": "failed",
                           "error": None, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    timing = {"read": 0.0, "segment": 0.0, "write": 0.0}
    try:
        sha = pio.file_sha256(job.input)
        rec["input_sha256"] = sha
        key = job.key(sha)
        out = Path(job.output)
        ov = Path(job.overlay) if job.overlay else None
        protect = (job.input,) + tuple(job.protect)
        for target in [out] + ([ov] if ov else []):  # before any work: never an input
            pio.check_writable(target, overwrite=True, protect=protect)
        prov = pio.read_provenance(out) if out.exists() else None
        labels_done = prov is not None and prov.get("key") == key
        if labels_done and (ov is None or ov.exists()):
            rec.update(status="skipped", labels=prov.get("labels"), shape=prov.get("shape"),
                       overlay=job.overlay)
            return rec
        for target in ([] if labels_done else [out]) + ([ov] if ov else []):
            try:
                if target.exists() and not job.overwrite:
                    why = ("; it was written for another input or other parameters"
                           if target == out and prov else "")
                    raise FileExistsError(f"output {target} already exists{why}; use "
                                          "--overwrite (overwrite=True) to replace it, or "
                                          "choose another output folder.")
                pio.check_writable(target, overwrite=job.overwrite, protect=protect)
            except FileExistsError:  # the labels may have appeared since the first check
                if target != out or not _written_by_twin(out, key, rec):
                    raise
                labels_done = True
        t = time.perf_counter()
        image, stored_axis = pio.read_image_and_axis(job.input, max_pixels=job.max_pixels)
        timing["read"] = time.perf_counter() - t
        rec["shape"] = list(image.shape)
        rec["dtype"] = str(image.dtype)
        t = time.perf_counter()
        if labels_done:  # a run stopped between the labels and the overlay: reuse them
            labels = pio.read_mask(out, max_pixels=None)
        else:
            labels = _segment(job, image, stored_axis, rec)
        timing["segment"] = time.perf_counter() - t
        labels = np.asarray(labels)
        rec["labels"] = int(np.unique(labels).size)
        t = time.perf_counter()
        if not labels_done:
            _write_labels(job, out, labels, key, sha, rec, protect)
        if ov is not None:
            write_overlay(ov, channels_last(image, job.channel_axis, stored_axis), labels,
                          overwrite=job.overwrite, protect=protect)
            rec["overlay"] = job.overlay
        timing["write"] = time.perf_counter() - t
        rec["status"] = rec.get("status_if_ok", "done")
        rec.pop("status_if_ok", None)
    except Exception as exc:  # noqa: BLE001 - one bad file is reported, never fatal
        rec.pop("status_if_ok", None)
        rec["error"] = {"type": type(exc).__name__, "message": str(exc),
                        "errno": getattr(exc, "errno", None),
                        "where": traceback.format_exc(limit=3).strip().splitlines()[-3:]}
    finally:
        timing["total"] = time.perf_counter() - t0
        rec["seconds"] = {k: round(v, 6) for k, v in timing.items()}
        rec["time"] = _now()
    return rec


def _segment(job: Job, image: np.ndarray, stored_axis: int | None,
             rec: dict[str, Any]) -> np.ndarray:
    m = get_method(job.method)
    arr, cax = prepare_colour(image, m.supports_multichannel, job.channel_axis, stored_axis)
    rec["channel_axis"] = cax
    if job.model is not None:
        model = _load_model(job.model, job.model_sha256)
        kwargs = dict(job.params)
        if job.seed is not None and _accepts_rng(model.predict):
            kwargs["rng"] = job.seed
        return model.predict(arr, channel_axis=cax, **kwargs)
    return run_validated(m, arr, channel_axis=cax, rng=job.seed, params=job.params)


def _write_labels(job: Job, out: Path, labels: np.ndarray, key: str, sha: str,
                  rec: dict[str, Any], protect: tuple[str, ...]) -> None:
    """Write the labels no-clobber; an output that appeared meanwhile with the same
    provenance key (a concurrent run, same input and parameters) makes the file skipped."""
    try:
        pio.write_labels(out, labels, overwrite=job.overwrite, protect=protect,
                         provenance={"key": key, "input_sha256": sha, "input": job.input,
                                     "method": rec["method"], "params": job.params,
                                     "seed": job.seed, "labels": rec["labels"],
                                     "shape": list(labels.shape)})
    except FileExistsError:  # it did not exist before segmenting: another run wrote it
        if not _written_by_twin(out, key, rec):
            raise FileExistsError(f"output {out} appeared meanwhile (another run writing there?)"
                                  "; it was not replaced.") from None


def _written_by_twin(out: Path, key: str, rec: dict[str, Any]) -> bool:
    """``out`` holds a concurrent run's labels of the same key: ``rec`` says skipped."""
    if (pio.read_provenance(out) or {}).get("key") != key:
        return False
    rec.update(status_if_ok="skipped",
               note="written meanwhile by another run with the same input and parameters")
    return True


# --------------------------------------------------------------------------- many files


@dataclasses.dataclass
class BatchResult:
    """Records of one :func:`segment_many` run (in input order) and where the log is."""

    records: list[dict[str, Any]]
    log: Path | None
    seconds: float
    #: Why the run stopped before the end (disk full), else None.
    stopped: str | None = None
    #: False when the last records (the summary) could not be logged.
    log_complete: bool = True

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
        out = {"event": "summary", "files": len(self.records), "done": self.count("done"),
               "skipped": self.count("skipped"), "failed": self.count("failed"),
               "seconds": round(self.seconds, 4), "time": _now()}
        if self.stopped:
            out["stopped"] = self.stopped
        return out


def _seed(rng: Any) -> int | None:
    """The ``rng`` passed to every file: an int seed as is, one draw from a Generator."""
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1))
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and int(rng) >= 0:
        return int(rng)
    raise TypeError("rng must be None, a non-negative int seed or a numpy.random.Generator; "
                    f"got {rng!r}.")


class _Stop(Exception):  # raised by the result callback to end a run (disk full)
    pass


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
    overwrite: bool = False
    log_protect: tuple[str, ...] = ()


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
    max_pixels: int | None = pio.DEFAULT_MAX_PIXELS,
) -> Plan:
    """Validate a batch once and name its outputs; nothing is read, written or created.

    See :func:`segment_many` for the parameters (``method=None`` means ``"otsu"``, or the
    model's method). Every usage error is raised here, before any work.

    Raises
    ------
    ValueError, FileNotFoundError, TypeError
        Unknown method, a method that needs a model, ``method`` conflicting with the model,
        invalid parameters, a bad suffix, channel axis or ``max_pixels``, no inputs.
    NotADirectoryError, IsADirectoryError, FileExistsError, ProtectedPathError
        ``outdir`` is a file or holds outputs of other settings; the log is a folder, an
        input, an output, or an existing non-log file (these two without ``overwrite``).
    """
    paths = expand_inputs(inputs)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(f"output folder {outdir} is an existing file; name a folder "
                                 "(--out DIR, created when missing).")
    max_pixels = pio.check_max_pixels(max_pixels)
    model_sha = None
    if model is not None:
        model = str(model)
        if not Path(model).is_file():
            raise FileNotFoundError(f"model file {model!r} does not exist.")
        model_sha = pio.file_sha256(model)
        fitted_for = _load_model(model, model_sha).method
        if method is not None and get_method(method).name != fitted_for:
            raise ValueError(f"method {method!r} conflicts with the model, which was fitted "
                             f"for {fitted_for!r}; leave out the method (--method).")
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
    guard = pio.InputSet(paths)
    jobs: list[Job | None] = []
    early: dict[int, dict[str, Any]] = {}
    taken: dict[str, str] = {}
    for i, p in enumerate(paths):
        try:
            out = pio.output_path_for(p, outdir, suffix)
        except Exception:  # noqa: BLE001 - unreadable TIFF header: the worker reports it
            out = outdir / (p.stem + suffix)
        key = str(pio.resolve(out))
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
        protect = guard.hits(out) + (guard.hits(ov) if ov is not None else [])
        jobs.append(Job(input=str(p), output=str(out), method=m.name, params=params,
                        seed=seed, model=model, model_sha256=model_sha, overwrite=overwrite,
                        channel_axis=channel_axis, overlay=None if ov is None else str(ov),
                        protect=tuple(protect), max_pixels=max_pixels))
    check_earlier_outputs(jobs, outdir)  # one error up front, not one per file
    log_path = (outdir / LOG_NAME) if log is True else (Path(log) if log else None)
    log_protect: list[str] = []
    if log_path is not None:
        log_protect = guard.hits(log_path)
        pio.check_log(log_path, overwrite=overwrite, protect=log_protect)
        if str(pio.resolve(log_path)) in taken:
            raise ValueError(f"the log {log_path} would be the output of "
                             f"{taken[str(pio.resolve(log_path))]}; choose another --log file.")
    return Plan(jobs, early, outdir, m.name, params, model, seed, log_path, overwrite,
                tuple(log_protect))


def run_plan(plan: Plan, *, executor: Any = None,
             progress: Callable[[dict[str, Any]], None] | None = None) -> BatchResult:
    """Run a :func:`plan_batch` plan: one :func:`segment_file` per job, logged as it arrives.

    ``executor`` and ``progress`` as in :func:`segment_many`; creates the output folder.
    """
    ex = as_executor(executor)
    pio.prepare_folder(plan.outdir)
    for folder in (plan.outdir, plan.outdir / "overlays"):
        pio.remove_stale_temps(folder)  # only those of writers that have exited
    logger = None if plan.log is None else pio.AppendLog(
        plan.log, overwrite=plan.overwrite, protect=plan.log_protect)
    t0 = time.perf_counter()
    records: dict[int, dict[str, Any]] = {}
    stopped: list[str] = []

    def log(rec: dict[str, Any]) -> None:
        if logger is not None:
            try:
                logger.write(rec)
            except pio.DiskFullError as exc:
                stopped.append(str(exc))
                raise _Stop from None

    def accept(i: int, rec: dict[str, Any]) -> None:
        records[i] = rec
        if progress is not None:
            progress(rec)
        log(rec)
        error = rec.get("error") or {}
        if rec["status"] == "failed" and pio.is_disk_full(OSError(error.get("errno"), "")):
            stopped.append(error["message"])
            raise _Stop

    def crashed(job: Job, exc: BaseException) -> dict[str, Any]:
        return {"event": "file", "input": job.input, "output": job.output,
                "method": plan.method, "params": plan.params, "seed": plan.seed,
                "status": "failed", "time": _now(),
                "error": {"type": type(exc).__name__, "message": str(exc)}}

    try:
        try:
            log({"event": "run", "time": _now(), "method": plan.method,
                 "params": plan.params, "model": plan.model, "seed": plan.seed,
                 "files": len(plan.jobs), "outdir": str(plan.outdir),
                 "executor": type(ex).__name__ if ex is not None else "serial",
                 "argv": sys.argv, "versions": versions()})
            for i, rec in plan.early.items():
                accept(i, rec)
            todo = [(i, job) for i, job in enumerate(plan.jobs) if job is not None]
            run_tasks(segment_file, todo, ex, accept, crashed)
        except _Stop:
            pass
    finally:
        result = BatchResult([records[i] for i in sorted(records)], plan.log,
                             time.perf_counter() - t0, stopped[0] if stopped else None)
        summary = result.summary()
        if len(records) < len(plan.jobs):
            summary["interrupted"] = True
            summary["not_finished"] = len(plan.jobs) - len(records)
        if logger is not None:
            try:
                logger.write(summary)
            except OSError:
                result.log_complete = False
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
    max_pixels: int | None = pio.DEFAULT_MAX_PIXELS,
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
        Replace outputs made from another input, with other settings or not by physeg
        (without it, other settings are one FileExistsError before any work). Outputs whose
        provenance matches are always skipped (resume); inputs are never written.
    overlay : bool, default False
        Also write ``outdir/overlays/<stem>.png`` (:func:`physeg.overlay.write_overlay`).
    log : True, path, or None/False, default True
        JSON-lines log: True appends to ``outdir/physeg-log.jsonl``; a path appends there;
        None/False writes none.
    suffix : {".png", ".tif", ".tiff"}
        Label file type for 2D results.
    channel_axis : int, None, "auto" or the CLI's text
        Colour axis of the inputs (:func:`physeg._validate.colour_axis`).
    max_pixels : int or None, default physeg.io.DEFAULT_MAX_PIXELS (100 million)
        An input declaring more pixels fails (before decoding); None reads any size.
    progress : callable, optional
        Called with each record as it arrives (the CLI's progress bar).

    Returns
    -------
    BatchResult
        Records in input order, with counts; ``result.ok`` is False when any file failed;
        ``result.stopped`` says why a run ended early (disk full).

    Raises
    ------
    ValueError, FileNotFoundError, TypeError, FileExistsError
        Unknown method or invalid parameters, no inputs, a bad executor, outputs of other
        settings (see ``overwrite``): before any work.
    physeg.io.OutputError
        The output folder or the log cannot be written (one line: why, how to fix it).
    """
    plan = plan_batch(inputs, outdir, method=method, params=params, model=model, rng=rng,
                      overwrite=overwrite, overlay=overlay, log=log, suffix=suffix,
                      channel_axis=channel_axis, max_pixels=max_pixels)
    return run_plan(plan, executor=executor, progress=progress)
