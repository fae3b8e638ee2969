"""The one contract every physeg method follows: registry, ``segment``, ``fit``, ``load``.

A method module registers itself once with :func:`register`, declaring its parameters
(:class:`Param`: name, type, default, range, help). The CLI, the benchmarks and the report are
generated from this registry, and :func:`segment` validates user parameters against it.

Method modules are imported lazily (see ``_METHOD_MODULES``); they must not import torch or
dask at module level, so listing the methods stays fast.

Examples
--------
>>> import numpy as np, physeg
>>> img = np.zeros((32, 32)); img[8:24, 8:24] = 1.0
>>> labels = physeg.segment(img, method="otsu")
>>> int(labels[16, 16]), int(labels[0, 0])
(1, 0)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .families._registry import (
    Method,
    Model,
    Param,
    _check_requires,
    get_method,
    methods,
    register,
    run_method,
    run_validated,
)

__all__ = [
    "Param",
    "Method",
    "Model",
    "register",
    "methods",
    "get_method",
    "segment",
    "fit",
    "load",
    "run_validated",
    "fit_reports_progress",
    "ProgressCallback",
]


def segment(
    image: Any,
    method: str = "otsu",
    *,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: Any = None,
    **params: Any,
) -> np.ndarray:
    """Segment one image with a registered method.

    Parameters
    ----------
    image : array_like
        (rows, cols) grey, (rows, cols, C) colour with ``channel_axis=-1``, or
        (planes, rows, cols) volume. Any integer or float dtype; NaN is rejected.
    method : str
        A name from :func:`methods` (``physeg methods`` on the command line).
    channel_axis : int or None
        Axis holding colour channels; ``None`` means no colour axis (scikit-image's
        convention). A (rows, cols, 3 | 4) array with ``channel_axis=None`` raises
        ``ValueError`` ("looks like a colour image ... pass channel_axis=-1"): read as a
        volume its planes would be 3 or 4 pixels wide, so it is an RGB(A) array whose axis
        was not named (:func:`physeg._validate.looks_like_colour`).
    spacing : sequence of float, optional
        Physical pixel size per spatial axis; ``None`` means unit pixels.
    rng : None, int or numpy.random.Generator
        Seed for every random step; the same seed gives the same labels.
    **params
        Method parameters (see ``physeg methods``); strings are converted as on the CLI.

    Returns
    -------
    labels : numpy.ndarray of int
        Label image of the input's spatial shape; 0 is background for binary tasks.
    """
    return run_method(image, method, channel_axis=channel_axis, spacing=spacing, rng=rng,
                      **params)


#: ``progress(done, total, message)``: ``done`` steps of ``total`` (None when unknown).
ProgressCallback = Callable[[int, "int | None", str], None]


def fit(
    method: str,
    images: Sequence[Any],
    masks: Sequence[Any] | None = None,
    *,
    progress: ProgressCallback | None = None,
    **params: Any,
) -> Model:
    """Fit a method's parameters (or train its network) on images with masks.

    Parameters
    ----------
    method : str
        A registered method with fitting support (``physeg methods`` marks them).
    images, masks : sequences of arrays
        Training images and their label masks (same spatial shapes).
    progress : callable, optional
        ``progress(done, total, message)``, called by fits that report progress (kinetic's
        CBO iterations, the networks' training iterations) after each step; ``total`` is
        None when the number of steps is not known in advance. A fit function receives it
        only if it declares a ``progress`` parameter, so fits without progress are called as
        before. An exception raised by ``progress`` stops the fit (how a caller cancels).
    **params
        Method and fitting parameters.

    Returns
    -------
    Model
        Call ``model.predict(image)``; ``model.save(path)``; ``physeg.load(path)``.
    """
    m = get_method(method)
    _check_requires(m)
    if m.fit_func is None:
        raise ValueError(
            f"method {m.name!r} has nothing to fit; call physeg.segment(image, "
            f"method={m.name!r}) directly. Methods that fit: "
            f"{sorted(k for k, v in methods().items() if v.fit_func is not None)}."
        )
    if images is None or len(images) == 0:
        raise ValueError("fit needs at least one training image.")
    if masks is not None and len(masks) != len(images):
        raise ValueError(
            f"got {len(images)} images but {len(masks)} masks; pass one mask per image."
        )
    if progress is not None and not callable(progress):
        # not a callback: the networks' own "progress" parameter (show a rich bar)
        params["progress"], progress = progress, None
    kwargs = m.validate(params, for_fit=True)
    if progress is not None and fit_reports_progress(m):
        kwargs["progress"] = progress
    return m.fit_func(list(images), None if masks is None else list(masks), **kwargs)


def fit_reports_progress(m: Method) -> bool:
    """Whether ``m``'s fit function declares a ``progress`` parameter (``**kwargs`` does not
    count: such a function may refuse names it does not know)."""
    import inspect

    if m.fit_func is None:
        return False
    arg = inspect.signature(m.fit_func).parameters.get("progress")
    return arg is not None and arg.kind in (inspect.Parameter.KEYWORD_ONLY,
                                            inspect.Parameter.POSITIONAL_OR_KEYWORD)


_TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")


def load(path: str | os.PathLike) -> Model:
    """Load a model written by ``Model.save`` (JSON) or a network checkpoint (``.pt``).

    A model file never runs code: checkpoints are read with ``torch.load(weights_only=True)``,
    which accepts tensors, numbers, strings, lists, tuples and dicts and refuses any other
    Python object, so a pickle built to execute something is refused before it can.

    Parameters
    ----------
    path : str or path-like
        ``.pt``, ``.pth`` or ``.ckpt``: a torch checkpoint (``NetworkModel.save``); any other
        name: a JSON model.

    Returns
    -------
    Model
        The fitted model; ``model.predict(image)`` segments.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    ValueError
        ``"not a physeg model file: <path> (<reason>)"`` for anything that is not a model
        physeg wrote: empty, truncated, random bytes, another format, an object that is not
        plain data, a wrong structure or weights that do not fit the network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist.")
    if path.stat().st_size == 0:
        raise _not_a_model(path, "the file is empty")
    torch_file = path.suffix.lower() in _TORCH_SUFFIXES
    data = _read_checkpoint(path) if torch_file else _read_json(path)
    if not isinstance(data, dict):
        raise _not_a_model(path, f"it holds a {type(data).__name__}, not a physeg model dict")
    if not torch_file and "physeg_model" not in data:
        raise _not_a_model(path, "no 'physeg_model' entry")
    version = data.get("physeg_model", Model.format_version)
    if not isinstance(version, int) or version > Model.format_version:
        raise _not_a_model(path, f"format {version!r}; this physeg reads format "
                                 f"{Model.format_version} (a newer physeg wrote it?)")
    name = data.get("method")
    if not isinstance(name, str):
        raise _not_a_model(path, "no 'method' entry naming the method")
    for key in ("params", "info"):
        if not isinstance(data.get(key, {}), dict):
            raise _not_a_model(path, f"its {key!r} entry is not a dict")
    try:
        m = get_method(name)
    except ValueError as exc:
        raise _not_a_model(path, str(exc)) from None
    _check_requires(m)
    if m.load_func is None:
        return Model(name, data.get("params", {}), data.get("info", {}))
    try:
        return m.load_func(data, path)
    except (ValueError, TypeError, KeyError) as exc:  # a wrong structure, said by the family
        raise _not_a_model(path, _one_line(exc)) from None


def _not_a_model(path: Path, reason: str) -> ValueError:
    return ValueError(f"not a physeg model file: {path} ({reason})")


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_checkpoint(path: Path) -> Any:
    """``torch.load(weights_only=True)``: plain data and tensors only, never code."""
    import re
    import warnings

    from ._optional import require

    torch = require("torch", feature="loading a .pt model")
    try:
        with warnings.catch_warnings():  # about non-torch pickles, which are refused anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol",
                                    category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: every failure means "not a model"
        with open(path, "rb") as fh:
            head = fh.read(4)
        text = str(exc)
        refused = re.search(r"GLOBAL ([\w.]+)", text)
        if refused:
            reason = (f"it holds a Python object ({refused.group(1)}) where a model file "
                      "holds only tensors and plain data; physeg never runs code from a file")
        elif head.lstrip()[:1] in (b"{", b"["):
            reason = "it is JSON, not a torch checkpoint; physeg JSON models end in .json"
        elif head == b"PK\x03\x04":  # torch.save writes a zip archive
            reason = ("a damaged or truncated torch checkpoint: "
                      f"{_one_line(exc).split('. ')[0]}")
        elif head[:1] == b"\x80":  # a pickle (protocol >= 2), as old torch.save wrote
            reason = "a pickle holding Python objects other than tensors and plain data"
        else:
            reason = "not a torch checkpoint (neither a zip archive nor a pickle)"
        raise _not_a_model(path, reason) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _not_a_model(path, "not a JSON text file (a torch checkpoint needs a .pt "
                                 "name)") from None
    except json.JSONDecodeError as exc:
        raise _not_a_model(path, f"malformed JSON: {exc}") from None
