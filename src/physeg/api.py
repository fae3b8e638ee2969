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
from typing import Any, Sequence

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
        Axis holding colour channels; ``None`` means grey.
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


def fit(
    method: str, images: Sequence[Any], masks: Sequence[Any] | None = None, **params: Any
) -> Model:
    """Fit a method's parameters (or train its network) on images with masks.

    Parameters
    ----------
    method : str
        A registered method with fitting support (``physeg methods`` marks them).
    images, masks : sequences of arrays
        Training images and their label masks (same spatial shapes).
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
    kwargs = m.validate(params, for_fit=True)
    return m.fit_func(list(images), None if masks is None else list(masks), **kwargs)


def load(path: str | os.PathLike) -> Model:
    """Load a model written by ``Model.save`` (JSON) or a torch checkpoint (``.pt``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist.")
    if path.suffix.lower() in (".pt", ".pth", ".ckpt"):
        from ._optional import require

        torch = require("torch", feature="loading a .pt model")
        data = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(data, dict) or "method" not in data:
            raise ValueError(f"{path} is not a physeg checkpoint (no 'method' entry).")
    else:
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a physeg JSON model: {exc}") from None
        if not isinstance(data, dict) or "physeg_model" not in data or "method" not in data:
            raise ValueError(f"{path} is not a physeg model file (missing 'physeg_model').")
    m = get_method(data["method"])
    _check_requires(m)
    if m.load_func is not None:
        return m.load_func(data, path)
    return Model(data["method"], data.get("params", {}), data.get("info", {}))
