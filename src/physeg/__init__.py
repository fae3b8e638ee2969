"""physeg: image segmentation by mathematical models.

Public API (see ``physeg.api``)::

    labels = physeg.segment(image, method="heat", **params)
    model = physeg.fit("kinetic", images, masks); model.predict(image)
    model.save("model.json"); physeg.load("model.json")
    physeg.methods()

Submodules (``physeg.io``, ``physeg.metrics``, ...) are imported lazily on first attribute
access so that ``import physeg`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {"segment", "fit", "load", "methods", "get_method", "register", "Param", "Method", "Model"}
_SUBMODULES = {"api", "io", "data", "metrics", "families", "overlay", "batch", "report", "cli"}

__all__ = sorted(_API | _SUBMODULES | {"__version__"})


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module("physeg.api"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"physeg.{name}")
    raise AttributeError(f"module 'physeg' has no attribute {name!r}")


def __dir__():
    return __all__
