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
* **Seeds.** The seed (default 0) is passed as ``rng`` to every file, as ``physeg segment
  --seed`` documents, so a file's labels equal ``physeg.segment(image, rng=seed)`` and do not
  depend on the executor, the number of workers or the order of completion. A ``Generator``
  contributes one draw. ``rng=None`` draws fresh entropy per file.
* **Output names.** ``<input stem>.png`` (uint8, or uint16 above 255 labels) for 2D label
  images (``suffix=".tif"`` for TIFF); volumes always get ``.tif``. Two inputs with the same
  stem would write the same output: the later ones are reported as failed, the rest run.
  Overlays go to ``overlays/<stem>.png``. No output is ever written over an input (same
  resolved path or inode), even with ``overwrite``.
* **Colour.** ``channel_axis="auto"`` treats 3 or 4 trailing values as colour; a method that
  does not declare ``supports_multichannel`` gets the grey mean of the channels
  (:func:`prepare_image`). This is the CLI's behaviour, moved here with the worker.
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
import hashlib
import io as _io
import json
import os
import platform
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "Job",
    "BatchResult",
    "expand_inputs",
    "overlay_path_for",
    "prepare_image",
    "colour_axis",
    "write_labels",
    "read_provenance",
    "file_sha256",
    "segment_file",
    "segment_many",
    "read_log",
]

_TIFF = (".tif", ".tiff")
_PROVENANCE_KEY = "physeg"
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
        Method parameters (strings are converted by the method's schema).
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
        Colour axis of the input; see :func:`prepare_image`.
    overlay : str or None
        Also write an RGB overlay (:func:`physeg.report.write_overlay`) to this path.
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
    from .api import load

    return load(path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def colour_axis(image: np.ndarray, channel_axis: int | str | None) -> int | None:
    """Which axis of a read image holds colour (None = grey or plain volume).

    ``"auto"``: the last axis of a 3D array with 3 or 4 entries, or of any 4D array.
    """
    if channel_axis == "auto":
        if (image.ndim == 3 and image.shape[-1] in (3, 4)) or image.ndim == 4:
            return image.ndim - 1
        return None
    if channel_axis is None:
        return None
    if not -image.ndim <= int(channel_axis) < image.ndim:
        raise ValueError(
            f"--channel-axis {channel_axis} is out of range for an image of shape {image.shape}."
        )
    return int(channel_axis) % image.ndim


def prepare_image(image: np.ndarray, supports_colour: bool,
                  channel_axis: int | str | None = "auto") -> tuple[np.ndarray, int | None]:
    """Return ``(array, channel_axis)`` ready for ``physeg.segment``.

    Colour goes last and alpha is dropped. A method that declares ``supports_multichannel``
    gets the colour image (``channel_axis=-1``); any other gets ``mean(R, G, B)`` of the
    intensities mapped to [0, 1] by the dtype's range (uint8 / 255, uint16 / 65535; floats
    unchanged), a fixed, data-independent scale.
    """
    from ._validate import to_float01

    ax = colour_axis(image, channel_axis)
    if ax is None:
        return image, None
    arr = np.moveaxis(image, ax, -1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if supports_colour:
        return arr, -1
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        arr = to_float01(arr.astype(np.uint8) if arr.dtype == bool else arr)
    return arr.astype(np.float32).mean(axis=-1), None


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _accepts_rng(func: Callable[..., Any]) -> bool:
    import inspect

    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return "rng" in sig.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    )


class ProtectedOutputError(PermissionError):
    """An output would overwrite an input of the batch."""


def segment_file(job: Job) -> dict[str, Any]:
    """Read, segment, write one file; return its log record. Never raises for a bad file.

    Steps: hash the input; if ``job.output`` exists and its provenance matches, return
    ``status="skipped"``; otherwise read the image (:func:`physeg.io.read_image`), prepare
    its colour axis (:func:`prepare_image`), segment it (``physeg.segment`` or the model's
    ``predict``), write the labels atomically with provenance (and the overlay when asked),
    and return ``status="done"``. Any exception (unreadable file, invalid image, method error,
    an output that exists without ``overwrite``, an output that is an input) gives
    ``status="failed"`` with the error's type and message, and writes nothing.

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
        sha = file_sha256(job.input)
        rec["input_sha256"] = sha
        key = job.key(sha)
        out = Path(job.output)
        targets = [out] + ([Path(job.overlay)] if job.overlay else [])
        for target in targets:
            for q in (job.input,) + tuple(job.protect):
                if _same_path(target, Path(q)):
                    raise ProtectedOutputError(
                        f"refusing to write {target}: it is the input file {q}; physeg never "
                        "writes over an input, even with --overwrite. Choose another -o folder."
                    )
        if out.exists():
            prov = read_provenance(out)
            ov_ok = job.overlay is None or Path(job.overlay).exists()
            if prov is not None and prov.get("key") == key and ov_ok:
                rec.update(status="skipped", labels=prov.get("labels"), shape=prov.get("shape"),
                           overlay=job.overlay)
                return rec
        for target in targets:
            if target.exists() and not job.overwrite:
                prov = read_provenance(target) if target == out else None
                why = ("; it was written for another input or other parameters" if prov
                       else "")
                raise FileExistsError(
                    f"output {target} already exists{why}; use --overwrite "
                    "(overwrite=True) to replace it, or choose another output folder."
                )
        from . import io as pio
        from .api import get_method, segment

        t = time.perf_counter()
        image = pio.read_image(job.input)
        timing["read"] = time.perf_counter() - t
        rec["shape"] = list(image.shape)
        rec["dtype"] = str(image.dtype)
        t = time.perf_counter()
        if job.model is not None:
            model = _load_model(job.model, job.model_sha256)
            rec["method"] = model.method
            m = get_method(model.method)
            arr, cax = prepare_image(image, m.supports_multichannel, job.channel_axis)
            kwargs = m.validate(dict(job.params))  # "--param tta=false" -> False, not "false"
            if job.seed is not None and _accepts_rng(model.predict):
                kwargs["rng"] = job.seed
            labels = model.predict(arr, channel_axis=cax, **kwargs)
        else:
            m = get_method(job.method)
            arr, cax = prepare_image(image, m.supports_multichannel, job.channel_axis)
            labels = segment(arr, method=m.name, channel_axis=cax, rng=job.seed, **job.params)
        rec["channel_axis"] = cax
        timing["segment"] = time.perf_counter() - t
        labels = np.asarray(labels)
        rec["labels"] = int(np.unique(labels).size)
        t = time.perf_counter()
        write_labels(out, labels, {"key": key, "input_sha256": sha, "input": job.input,
                                   "method": rec["method"], "params": job.params,
                                   "seed": job.seed, "labels": rec["labels"],
                                   "shape": list(labels.shape)})
        if job.overlay:
            from .report import write_overlay

            ax = colour_axis(image, job.channel_axis)
            shown = image if ax is None else np.moveaxis(image, ax, -1)
            write_overlay(job.overlay, shown, labels)
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
    rng : None, int or numpy.random.Generator, default 0
        Seed passed as ``rng`` to every file (a Generator contributes one draw), so the
        labels do not depend on the executor or the order.
    overwrite : bool, default False
        Replace outputs that exist but were produced from another input or other parameters
        (or not by physeg). Outputs whose provenance matches are always skipped (resume).
        Inputs are never written, even with ``overwrite``.
    overlay : bool, default False
        Also write ``outdir/overlays/<stem>.png`` (:func:`physeg.report.write_overlay`).
    log : True, path, or None/False, default True
        JSON-lines log: True appends to ``outdir/physeg-log.jsonl``; a path appends there;
        None/False writes none.
    suffix : {".png", ".tif", ".tiff"}
        Label file type for 2D results.
    channel_axis : int, None or "auto"
        Colour axis of the inputs (see :func:`prepare_image`).
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
    from . import io as pio
    from .api import get_method

    paths = expand_inputs(inputs)
    outdir = Path(outdir)
    params = dict(params or {})
    model_sha = None
    if model is not None:
        model = str(model)
        if not Path(model).is_file():
            raise FileNotFoundError(f"model file {model!r} does not exist.")
        model_sha = file_sha256(model)
        method = _load_model(model, model_sha).method
    m = get_method(method)
    if model is None and m.func is None:
        raise ValueError(
            f"method {m.name!r} needs a fitted model: run `physeg fit --method {m.name} ...` "
            "and pass model=FILE (--model FILE)."
        )
    method = m.name
    m.validate(params)  # schema errors now, not once per file
    suffix = suffix if suffix.startswith(".") else "." + suffix
    if suffix.lower() not in pio.LABEL_SUFFIXES:
        raise ValueError(f"suffix must be one of {', '.join(pio.LABEL_SUFFIXES)}; got {suffix!r}.")
    seed = _seed(rng)
    ex = _as_executor(executor)
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
            early[i] = {"event": "file", "input": str(p), "output": None, "method": method,
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
        jobs.append(Job(input=str(p), output=str(out), method=method, params=params,
                        seed=seed, model=model, model_sha256=model_sha, overwrite=overwrite,
                        channel_axis=channel_axis, overlay=None if ov is None else str(ov),
                        protect=tuple(protect)))
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in outdir.glob(".*.physeg-tmp"):  # left by a killed writer
        stale.unlink(missing_ok=True)
    log_path = (outdir / LOG_NAME) if log is True else (Path(log) if log else None)
    logger = _Log(log_path)
    logger.write({"event": "run", "time": _now(), "method": method, "params": params,
                  "model": model, "seed": seed, "files": len(jobs), "outdir": str(outdir),
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
        for i, rec in early.items():
            _accept(i, rec)
        todo = [(i, job) for i, job in enumerate(jobs) if job is not None]
        if ex is None:
            for i, job in todo:
                _accept(i, segment_file(job))
        else:
            futures = {ex.submit(segment_file, job): (i, job) for i, job in todo}
            try:
                for fut in cf.as_completed(futures):
                    i, job = futures[fut]
                    try:
                        rec = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died (e.g. killed)
                        rec = {"event": "file", "input": job.input, "output": job.output,
                               "method": method, "params": params, "seed": seed,
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
