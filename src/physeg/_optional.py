"""Lazy import of optional dependencies with an install hint (MONAI's optional_import idea)."""

from __future__ import annotations

import importlib
from types import ModuleType

_EXTRA = {"torch": "torch", "cbx": "cbo", "dask": "dask", "distributed": "dask", "zarr": "dask"}


def require(module: str, *, feature: str = "") -> ModuleType:
    """Import ``module`` or raise ImportError saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA.get(top)
        how = f"pip install 'physeg[{extra}]'" if extra else f"pip install {top}"
        what = f" for {feature}" if feature else ""
        raise ImportError(f"{module} is needed{what} but is not installed; run: {how}") from exc
