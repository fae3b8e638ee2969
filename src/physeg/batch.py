"""Segment many files: one pure per-file function, any executor, resumable, logged.

The unit of work is :func:`segment_file`: it reads one input, segments it, writes the label
image atomically and returns a small JSON-able record. It touches no shared state, so the same
function runs serially, in a :class:`concurrent.futures.ProcessPoolExecutor` (``--jobs N``) or
on a dask cluster (``--scheduler tcp://host:port``; any :class:`concurrent.futures.Executor`,
or a ``distributed.Client``, whose ``get_executor()`` is used). :func:`segment_many` submits
one job per file and appends each returned record to a JSON-lines log as it arrives.

Choices made where the issue left room
--------------------------------------
* **Where the checksum lives.** Each output carries its own provenance in its metadata (a PNG
  ``tEXt`` chunk or the TIFF ``ImageDescription``, key ``physeg``): the SHA-256 of the input
  file's bytes and a digest of the method, its validated parameters, the model file's digest
  and the seed. Because the output is written to a temporary file and renamed, the output and
  its provenance appear together or not at all, so a crash at any instant leaves either a
  complete, self-describing output or none. A re-run skips an output whose provenance matches
  (status ``skipped``) and recomputes everything else; the log is a record, never the source
  of truth, so deleting it loses nothing.
* **An existing output that does not match** (another input, other parameters, or a file
  physeg did not write) is never silently replaced: without ``overwrite`` it is reported as
  ``failed`` with the fix in the message.
* **Seeds.** A seed ``rng`` gives every file its own stream,
  ``SeedSequence(seed, spawn_key=(crc32(input name),))``, so labels do not depend on the
  executor, the number of workers or the order of completion. A ``Generator`` contributes one
  draw as the base seed. ``rng=None`` draws fresh entropy (then the seed is not part of the
  provenance, so resuming still works for deterministic methods).
* **Output names.** ``<input stem>.png`` (uint8, or uint16 above 255 labels) for 2D label
  images; ``.tif`` for volumes or more than 65535 labels. Two inputs with the same stem are
  rejected before any work starts.
* **Log records** (one JSON object per line, appended and flushed per file): ``event`` ``file``
  with input, output, status (``done``, ``skipped``, ``failed``), method, params, seed,
  input SHA-256, shape, dtype, label count, timings (read, segment, write, total, seconds),
  worker (host:pid), error (type and message) and time; a ``run`` record opens every run with
  the versions, executor and parameters, and a ``summary`` record closes it.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
import functools
import glob
import hashlib
import io as _io
import json
import os
import platform
import socket
import sys
import time
import traceback
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "Job",
    "BatchResult",
    "IMAGE_SUFFIXES",
    "expand_inputs",
    "output_path_for",
    "read_image_file",
    "write_labels",
    "read_provenance",
    "file_sha256",
    "segment_file",
    "segment_many",
    "read_log",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
_TIFF = (".tif", ".tiff")
_PROVENANCE_KEY = "physeg"
LOG_NAME = "physeg-log.jsonl"


# --------------------------------------------------------------------------- inputs / outputs


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (their image files, sorted) and glob patterns into paths.

    Raises
    ------
    FileNotFoundError
        An input that is neither a file, a folder nor a glob matching something.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(
                sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif p.is_file():
            out.append(p)
        else:
            matches = sorted(glob.glob(str(item)))
            if not matches:
                raise FileNotFoundError(
                    f"input {str(item)!r} is not a file, a folder or a glob that matches files."
                )
            out.extend(Path(m) for m in matches if Path(m).is_file())
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def output_path_for(input_path: str | os.PathLike, outdir: str | os.PathLike,
                    suffix: str = ".png") -> Path:
    """The output file for one input: ``outdir / (stem + suffix)``."""
    return Path(outdir) / (Path(input_path).stem + suffix)


def read_image_file(path: str | os.PathLike) -> tuple[np.ndarray, int | None]:
    """Read an image file; return ``(array, channel_axis)``.

    PNG/JPEG/... with 3 or 4 trailing values per pixel are colour (``channel_axis=-1``).
    TIFF files are read whole (multi-page TIFF = a volume (planes, rows, cols)); a TIFF whose
    last axis has 3 or 4 entries and that has three axes is taken as colour.
    """
    path = Path(path)
    if path.suffix.lower() in _TIFF:
        import tifffile

        arr = np.asarray(tifffile.imread(path))
    else:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            arr = np.array(im)
    channel_axis = -1 if arr.ndim == 3 and arr.shape[-1] in (3, 4) else None
    if arr.ndim == 4 and arr.shape[-1] in (3, 4):
        channel_axis = -1
    return arr, channel_axis


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.physeg-tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_labels(path: str | os.PathLike, labels: np.ndarray,
                 provenance: dict[str, Any] | None = None) -> Path:
    """Write a label image atomically (temporary file, then rename), with provenance metadata.

    PNG holds 2D labels up to 65535 (uint8 when the maximum is at most 255, else uint16);
    TIFF holds anything (uint8/16/32). ``provenance`` is stored as JSON in the PNG ``tEXt``
    chunk / TIFF description under the key ``physeg``.
    """
    path = Path(path)
    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {lab.dtype}.")
    top = int(lab.max()) if lab.size else 0
    if lab.size and int(lab.min()) < 0:
        raise ValueError(f"labels must be >= 0 to be written as an image, got min {lab.min()}.")
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32
    lab = lab.astype(dtype, copy=False)
    text = json.dumps(provenance or {}, sort_keys=True)
    buf = _io.BytesIO()
    if path.suffix.lower() == ".png":
        if lab.ndim != 2 or dtype == np.uint32:
            raise ValueError(
                f"PNG holds 2D labels up to 65535; got shape {lab.shape}, max {top}. "
                "Write a .tif instead."
            )
        from PIL import Image, PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text(_PROVENANCE_KEY, text)
        Image.fromarray(lab).save(buf, format="PNG", pnginfo=info)
    elif path.suffix.lower() in _TIFF:
        import tifffile

        tifffile.imwrite(buf, lab, photometric="minisblack", metadata=None,
                         description=f"{_PROVENANCE_KEY}:{text}", compression="zlib")
    else:
        raise ValueError(f"cannot write labels to {path.name!r}: use a .png or .tif name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, buf.getvalue())
    return path


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """Return the provenance stored by :func:`write_labels`, or None (absent / unreadable)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                text = getattr(im, "text", {}).get(_PROVENANCE_KEY)
            return None if text is None else json.loads(text)
        if path.suffix.lower() in _TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tf:
                desc = tf.pages[0].description
            prefix = f"{_PROVENANCE_KEY}:"
            return json.loads(desc[len(prefix):]) if desc.startswith(prefix) else None
    except Exception:  # noqa: BLE001 - a damaged output simply has no provenance
        return None
    return None


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- the unit of work


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything :func:`segment_file` needs for one file (picklable, JSON-able).

    Parameters
    ----------
    input, output : str
        Input image path and output label path (``.png`` or ``.tif``).
    method : str
        Registered method name (ignored when ``model`` is given: the model's method is used).
    params : dict
        Validated method parameters.
    seed : int or None
        This file's seed (see the module notes); None draws fresh entropy.
    model : str or None
        Path of a saved model (``physeg.load``); its SHA-256 is part of the provenance.
    model_sha256 : str or None
        Digest of the model file.
    overwrite : bool
        Replace an existing output whose provenance does not match.
    channel_axis : int, "auto"
        Colour axis of the input; ``"auto"`` follows :func:`read_image_file`.
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

    def key(self, input_sha256: str) -> str:
        """Digest identifying (input bytes, method, parameters, model, seed)."""
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
    from .api import load

    return load(path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def segment_file(job: Job) -> dict[str, Any]:
    """Read, segment, write one file; return its log record. Never raises for a bad file.

    Steps: hash the input; if ``job.output`` exists and its provenance matches, return
    ``status="skipped"``; otherwise read the image, segment it (``physeg.segment`` or the
    model's ``predict``), write the labels atomically with provenance, and return
    ``status="done"``. Any exception (unreadable file, invalid image, method error) gives
    ``status="failed"`` with the error's type and message, and no output.

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
        sha = file_sha256(job.input)
        rec["input_sha256"] = sha
        key = job.key(sha)
        out = Path(job.output)
        if Path(job.input).resolve() == out.resolve():
            raise ValueError(f"output {job.output!r} is the input itself; physeg never writes "
                             "over an input. Choose another output folder.")
        if out.exists():
            prov = read_provenance(out)
            if prov is not None and prov.get("key") == key:
                rec.update(status="skipped", labels=prov.get("labels"), shape=prov.get("shape"))
                return rec
            if not job.overwrite:
                why = ("was written for another input or other parameters" if prov is not None
                       else "was not written by physeg (no provenance)")
                raise FileExistsError(
                    f"output {job.output!r} exists and {why}; pass overwrite=True "
                    "(--overwrite) to replace it, or choose another output folder."
                )
        t = time.perf_counter()
        image, auto_axis = read_image_file(job.input)
        channel_axis = auto_axis if job.channel_axis == "auto" else job.channel_axis
        timing["read"] = time.perf_counter() - t
        rec["shape"] = list(image.shape)
        rec["dtype"] = str(image.dtype)
        rec["channel_axis"] = channel_axis
        t = time.perf_counter()
        if job.model is not None:
            model = _load_model(job.model, job.model_sha256)
            rec["method"] = model.method
            extra = {} if job.seed is None or "rng" in model.params else {"rng": job.seed}
            labels = model.predict(image, channel_axis=channel_axis, **extra)
        else:
            from .api import segment

            labels = segment(image, method=job.method, channel_axis=channel_axis,
                             rng=job.seed, **job.params)
        timing["segment"] = time.perf_counter() - t
        labels = np.asarray(labels)
        rec["labels"] = int(np.unique(labels).size)
        t = time.perf_counter()
        write_labels(out, labels, {"key": key, "input_sha256": sha, "input": job.input,
                                   "method": rec["method"], "params": job.params,
                                   "seed": job.seed, "labels": rec["labels"],
                                   "shape": list(labels.shape)})
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


def _file_seed(base: int | None, name: str) -> int | None:
    if base is None:
        return None
    ss = np.random.SeedSequence(int(base), spawn_key=(zlib.crc32(name.encode()),))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _base_seed(rng: Any) -> int | None:
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1))
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and int(rng) >= 0:
        return int(rng)
    raise TypeError(
        f"rng must be None, a non-negative int seed or a numpy.random.Generator; got {rng!r}."
    )


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


def _as_executor(executor: Any) -> cf.Executor | None:
    if executor is None or isinstance(executor, cf.Executor):
        return executor
    if hasattr(executor, "get_executor"):  # distributed.Client
        return executor.get_executor(pure=False)
    raise TypeError(
        "executor must be None (serial), a concurrent.futures.Executor (e.g. "
        f"ProcessPoolExecutor) or a distributed.Client; got {type(executor).__name__}."
    )


def versions() -> dict[str, str]:
    """Versions of physeg, Python and the main dependencies (for logs and reports)."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("physeg", "numpy", "scipy", "scikit-image", "dask", "distributed", "torch"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def segment_many(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    method: str = "otsu",
    params: dict[str, Any] | None = None,
    model: str | os.PathLike | None = None,
    executor: Any = None,
    rng: Any = None,
    overwrite: bool = False,
    log: str | os.PathLike | None | bool = True,
    suffix: str | None = None,
    channel_axis: int | str | None = "auto",
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> BatchResult:
    """Segment every input file into ``outdir``; resumable and logged.

    Parameters
    ----------
    inputs : path, folder, glob, or a sequence of them
        Image files to segment (folders contribute their image files, sorted by name).
    outdir : path
        Output folder (created). Outputs are named after their inputs (see module notes).
    method : str, default "otsu"
        Registered method name (``physeg methods``).
    params : dict, optional
        Method parameters; validated against the method's schema before any work starts,
        so a typo fails at once rather than once per file.
    model : path, optional
        A saved model (``physeg.load``); replaces ``method``.
    executor : concurrent.futures.Executor, distributed.Client or None
        Where the per-file function runs. None runs serially in this process. A
        ``ProcessPoolExecutor(n)`` gives n worker processes; a ``distributed.Client`` (or its
        ``get_executor()``) runs on a dask cluster. The executor is not shut down here.
    rng : None, int or numpy.random.Generator
        Base seed; each file gets its own stream derived from it and its name, so the labels
        do not depend on the executor or the order.
    overwrite : bool, default False
        Replace outputs that exist but were produced from another input or other parameters.
        Outputs whose provenance matches are always skipped (resume).
    log : True, path, or None/False, default True
        JSON-lines log: True appends to ``outdir/physeg-log.jsonl``; a path appends there;
        None/False writes none.
    suffix : {".png", ".tif"} or None
        Output format; None picks ``.tif`` for 3D inputs (by file type) and ``.png`` otherwise.
    channel_axis : int, None or "auto"
        Colour axis of the inputs; "auto" treats 3 or 4 trailing values as colour.
    progress : callable, optional
        Called with each record as it arrives (the CLI's progress bar).

    Returns
    -------
    BatchResult
        Records in input order, with counts; ``result.ok`` is False when any file failed.

    Raises
    ------
    ValueError
        Unknown method or invalid parameters, two inputs that would write the same output,
        an input inside ``outdir`` that would be overwritten.
    """
    from .api import get_method

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = expand_inputs(inputs)
    outdir = Path(outdir)
    params = dict(params or {})
    model_sha = None
    if model is not None:
        model = str(model)
        if not Path(model).is_file():
            raise FileNotFoundError(f"model file {model!r} does not exist.")
        model_sha = file_sha256(model)
        from .api import load

        method = load(model).method
    m = get_method(method)
    method = m.name
    params = m.validate(params)
    if suffix is not None and suffix.lower() not in (".png", ".tif", ".tiff"):
        raise ValueError(f"suffix must be '.png' or '.tif', got {suffix!r}.")
    base = _base_seed(rng)
    jobs = []
    taken: dict[Path, Path] = {}
    for p in paths:
        suf = suffix or (".tif" if p.suffix.lower() in _TIFF else ".png")
        out = output_path_for(p, outdir, suf)
        if out in taken:
            raise ValueError(
                f"inputs {str(taken[out])!r} and {str(p)!r} would both write {str(out)!r}; "
                "rename one or segment them into separate output folders."
            )
        taken[out] = p
        jobs.append(Job(input=str(p), output=str(out), method=method, params=params,
                        seed=_file_seed(base, p.name), model=model, model_sha256=model_sha,
                        overwrite=overwrite, channel_axis=channel_axis))
    ex = _as_executor(executor)
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in outdir.glob(".*.physeg-tmp"):  # left by a killed writer
        stale.unlink(missing_ok=True)
    log_path = (outdir / LOG_NAME) if log is True else (Path(log) if log else None)
    logger = _Log(log_path)
    logger.write({"event": "run", "time": _now(), "method": method, "params": params,
                  "model": model, "seed": base, "files": len(jobs), "outdir": str(outdir),
                  "executor": type(ex).__name__ if ex is not None else "serial",
                  "argv": sys.argv, "versions": versions()})
    t0 = time.perf_counter()
    records: dict[int, dict[str, Any]] = {}

    def _accept(i: int, rec: dict[str, Any]) -> None:
        records[i] = rec
        logger.write(rec)
        if progress is not None:
            progress(rec)

    try:
        if ex is None:
            for i, job in enumerate(jobs):
                _accept(i, segment_file(job))
        else:
            futures = {ex.submit(segment_file, job): i for i, job in enumerate(jobs)}
            try:
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    try:
                        rec = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died (e.g. killed)
                        rec = {"event": "file", "input": jobs[i].input, "output": jobs[i].output,
                               "method": method, "params": params, "seed": jobs[i].seed,
                               "status": "failed", "time": _now(),
                               "error": {"type": type(exc).__name__, "message": str(exc)}}
                    _accept(i, rec)
            finally:
                for fut in futures:
                    fut.cancel()
    finally:
        result = BatchResult([records[i] for i in sorted(records)], log_path,
                             time.perf_counter() - t0)
        summary = result.summary()
        if len(records) < len(jobs):
            summary["interrupted"] = True
            summary["not_finished"] = len(jobs) - len(records)
        logger.write(summary)
        logger.close()
    return result


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
