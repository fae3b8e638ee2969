"""The method registry: :class:`Param` schemas, :class:`Method`, :class:`Model`, :func:`register`.

Every method family registers itself once, at import, with a :class:`Method`: its name, its
segmentation function, its parameter schema (:class:`Param`: type, default, range, help) and,
for methods that learn, its fit and load functions. The schema is the single source of defaults
and ranges: :meth:`Method.validate` converts and checks user values once (:func:`run_method`,
:func:`physeg.api.fit`), and the functions it calls do not check them again.

This module sits at the bottom of the ``physeg.families`` layer so that method families can
import it without importing :mod:`physeg.api` (which is above them). Method modules are
imported lazily by name (``_METHOD_MODULES``); they must not import torch or dask at module
level, so that listing the methods stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._validate import check_image, look_up_option

__all__ = [
    "Param", "Method", "Model", "register", "defaults_from", "methods", "get_method", "run_method",
    "run_validated",
]

# Modules that call ``register`` when imported. Order = order shown by ``physeg methods``.
_METHOD_MODULES = (
    "physeg.families.baselines",
    "physeg.families.heat",
    "physeg.families.kinetic",
    "physeg.families.dynaseg",
    "physeg.families.nets.msnet",
    "physeg.families.nets.unet",
    "physeg.families.nets.pde_unet",
)

_REGISTRY: dict[str, "Method"] = {}
_LOADED = False

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


@dataclasses.dataclass(frozen=True)
class Param:
    """One declared method parameter.

    Parameters
    ----------
    name : str
        Keyword name (Python identifier).
    type : {"int", "float", "str", "bool"}
        Value type; CLI strings are converted to it.
    default : Any
        Default value (``None`` allowed, meaning "automatic").
    help : str
        One line: the effect of raising / lowering it.
    low, high : float, optional
        Inclusive bounds for numbers.
    choices : tuple of str, optional
        Allowed values for strings.
    odd : bool, optional
        Integers only: the value must be odd (a window centred on its pixel).
    """

    name: str
    type: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    odd: bool = False

    def convert(self, value: Any) -> Any:
        """Convert (CLI strings) and validate one value; raise a helpful error otherwise."""
        if value is None:
            return None
        typ = _TYPES[self.type]
        if isinstance(value, str) and self.type != "str":
            text = value.strip()
            if text.lower() in ("none", "auto", ""):
                return None
            if self.type == "bool":
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(f"parameter {self.name!r} expects true/false, got {value!r}.")
            try:
                value = float(text) if self.type == "float" else int(text)
            except ValueError:
                raise ValueError(
                    f"parameter {self.name!r} expects a {self.type}, got {value!r}."
                ) from None
        if self.type == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"parameter {self.name!r} expects a bool, got {value!r}.")
            return bool(value)
        if self.type in ("int", "float"):
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise TypeError(f"parameter {self.name!r} expects a {self.type}, got {value!r}.")
            if self.type == "int":
                if float(value) != int(value):
                    raise ValueError(
                        f"parameter {self.name!r} expects an integer, got {value!r}."
                    )
                value = int(value)
                if self.odd and value % 2 == 0:
                    raise ValueError(f"parameter {self.name!r} must be odd (a window centred "
                                     f"on its pixel), got {value}; use {value - 1} or "
                                     f"{value + 1}.")
            else:
                value = float(value)
                if not np.isfinite(value):
                    raise ValueError(f"parameter {self.name!r} must be finite, got {value!r}.")
            too_low = self.low is not None and value < self.low
            too_high = self.high is not None and value > self.high
            if too_low or too_high:
                raise ValueError(
                    f"parameter {self.name!r}={value!r} is out of range "
                    f"[{self.low if self.low is not None else '-inf'}, "
                    f"{self.high if self.high is not None else 'inf'}]."
                )
            return value
        value = typ(value)
        if self.choices is not None:
            value = look_up_option(value, self.choices, what=f"value for {self.name!r}")
        return value

    def describe(self) -> str:
        """Short human-readable range text used by ``physeg methods``."""
        if self.choices:
            rng = "|".join(self.choices)
        elif self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            rng = f"[{lo}, {hi}]"
        else:
            rng = ""
        return f"{rng} odd" if self.odd else rng


@dataclasses.dataclass
class Method:
    """A registered segmentation method.

    ``func(image, *, channel_axis, spacing, rng, **params) -> labels`` segments one image,
    where ``image`` has passed :func:`physeg._validate.check_image` (channels moved last,
    ``channel_axis`` is then ``-1`` or ``None``). ``fit_func(images, masks, **params) -> Model``
    is present for methods that learn or fit.
    """

    name: str
    func: Callable[..., np.ndarray] | None
    params: tuple[Param, ...]
    summary: str
    fit_func: Callable[..., "Model"] | None = None
    load_func: Callable[[dict[str, Any], Path], "Model"] | None = None
    supports_3d: bool = False
    supports_multichannel: bool = True
    needs_labels: bool = False
    requires: tuple[str, ...] = ()
    fit_params: tuple[Param, ...] = ()

    def __post_init__(self) -> None:
        # a public function wrapped by ``defaults_from`` checks its arguments; the registry
        # calls the unchecked function because run_method has validated them already
        self.func = getattr(self.func, "unchecked", self.func)
        self.fit_func = getattr(self.fit_func, "unchecked", self.fit_func)

    def check_segments_without_model(self) -> None:
        """Raise ``ValueError`` (with the fix) when this method only segments with a fitted model.

        The one "needs a fitted model" check: :func:`run_method` calls it, and the interfaces
        (batch, CLI, bench) call it where a method is chosen, before any work.
        """
        if self.func is None:
            raise ValueError(
                f"method {self.name!r} needs training: fit a model (`physeg fit --method "
                f"{self.name} ...` or physeg.fit({self.name!r}, images, masks)) and use it "
                "(--model FILE, model=FILE, or physeg.load(FILE).predict(image))."
            )

    def param(self, name: str) -> Param:
        for p in self.params + self.fit_params:
            if p.name == name:
                return p
        raise KeyError(name)

    def validate(self, params: dict[str, Any], *, for_fit: bool = False) -> dict[str, Any]:
        """Convert and check ``params`` against the declared schema.

        ``for_fit=True`` checks the parameters of ``fit``: the fit parameters plus, for a
        method that also segments without a model (``func`` set), its segmentation
        parameters; a model-only method's ``params`` are those of its model's ``predict``
        (e.g. ``tta``) and are not fit parameters.
        """
        declared = {} if for_fit and self.func is None else {p.name: p for p in self.params}
        if for_fit:
            declared.update({p.name: p for p in self.fit_params})
        out = {}
        for key, value in params.items():
            k = key.replace("-", "_")
            if k not in declared:
                known = sorted(declared)
                import difflib

                close = difflib.get_close_matches(k, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"method {self.name!r} has no parameter {key!r}; its parameters are "
                    f"{known}.{hint}"
                )
            value = declared[k].convert(value)
            # None ("none", "auto" on the CLI) means the parameter's default
            out[k] = declared[k].default if value is None else value
        return out

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


class Model:
    """A fitted or trained method: parameters (and weights) plus ``predict``.

    Subclasses override :meth:`predict`, :meth:`state` (JSON-able) and, for torch models,
    :meth:`save`. The default JSON format is::

        {"physeg_model": 1, "method": NAME, "params": {...}, "state": {...}}
    """

    format_version = 1

    def __init__(self, method: str, params: dict[str, Any] | None = None,
                 info: dict[str, Any] | None = None):
        self.method = method
        self.params = dict(params or {})
        self.info = dict(info or {})

    def predict(
        self, image: np.ndarray, *, channel_axis: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Segment ``image`` with the fitted parameters (overridable by ``kwargs``)."""
        params = {**self.params, **kwargs}
        return run_method(image, self.method, channel_axis=channel_axis, **params)

    def state(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "physeg_model": self.format_version,
            "method": self.method,
            "params": _jsonable(self.params),
            "info": _jsonable(self.info),
            "state": _jsonable(self.state()),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as JSON (atomically); return the path."""
        from ..io import atomic_write_bytes

        path = Path(path)
        data = json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()
        atomic_write_bytes(path, data)
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, params={self.params!r})"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def defaults_from(params: Sequence[Param]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a method's public function take its defaults and checks from its Param schema.

    The schema is the single source of defaults and ranges. The decorated function declares the
    schema's parameters keyword-only *without* defaults; this fills ``__kwdefaults__`` (which
    ``inspect.signature``, ``help()`` and calls honour) from ``Param.default``, and returns a
    wrapper that converts and checks the schema's arguments once (:meth:`Param.convert`; None
    means the default) before calling the function. The unchecked function stays reachable as
    ``wrapper.unchecked``; :class:`Method` registers that one, because :func:`run_method` has
    already validated the values (so each path validates exactly once). A default written in the
    signature as well is refused at import, so the two cannot drift apart.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func)
        kwdefaults = dict(func.__kwdefaults__ or {})
        declared = {}
        for p in params:
            arg = signature.parameters.get(p.name)
            if arg is None:
                continue
            if arg.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"{func.__qualname__}: schema parameter {p.name!r} must be "
                                "keyword-only (after '*').")
            if arg.default is not inspect.Parameter.empty:
                raise TypeError(f"{func.__qualname__}: the default of {p.name!r} belongs to "
                                "its Param; remove it from the signature.")
            kwdefaults[p.name] = p.default
            declared[p.name] = p
        func.__kwdefaults__ = kwdefaults

        @functools.wraps(func)
        def checked(*args: Any, **kwargs: Any) -> Any:
            for name in kwargs.keys() & declared.keys():
                value = declared[name].convert(kwargs[name])
                kwargs[name] = declared[name].default if value is None else value
            return func(*args, **kwargs)

        checked.unchecked = func  # type: ignore[attr-defined]
        return checked

    return decorate


def register(method: Method) -> Method:
    """Add ``method`` to the registry (called once, at import of its module)."""
    if method.name in _REGISTRY and _REGISTRY[method.name] is not method:
        existing = _REGISTRY[method.name]
        if existing.func is not method.func or existing.fit_func is not method.fit_func:
            raise ValueError(f"a method named {method.name!r} is already registered.")
    _REGISTRY[method.name] = method
    return method


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for mod in _METHOD_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            # A method family not (yet) present in this build is simply absent; a missing
            # third-party dependency inside an existing module is a real error.
            if exc.name is None or not mod.startswith(exc.name):
                raise
    _LOADED = True


def _check_requires(m: Method) -> None:
    """Fail early, with the install hint, when a method's optional dependency is missing."""
    from .._optional import require

    for module in m.requires:
        require(module, feature=f"method {m.name!r}")


def methods() -> dict[str, Method]:
    """Return the registered methods by name (importing method modules on first call)."""
    _load_all()
    return dict(_REGISTRY)


def get_method(name: str) -> Method:
    """Return the registered :class:`Method` called ``name`` (with a "did you mean")."""
    table = methods()
    return table[look_up_option(name, table, what="method")]



def run_method(
    image: Any,
    method: str,
    *,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: Any = None,
    **params: Any,
) -> np.ndarray:
    """Validate ``params`` against the method's schema, then :func:`run_validated`.

    The body of :func:`physeg.api.segment` and of :meth:`Model.predict`; see
    ``physeg.segment`` for the parameters.
    """
    m = get_method(method)
    return run_validated(m, image, channel_axis=channel_axis, spacing=spacing, rng=rng,
                         params=m.validate(params))


def run_validated(
    m: Method,
    image: Any,
    *,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: Any = None,
    params: dict[str, Any],
) -> np.ndarray:
    """Check ``image`` and run method ``m`` with ``params`` already validated by ``m.validate``.

    For callers that validated once up front (a batch validates before its first file);
    everything else goes through :func:`run_method`. Missing parameters take their defaults.
    """
    _check_requires(m)
    m.check_segments_without_model()
    arr = check_image(
        image,
        channel_axis=channel_axis,
        allow_3d=m.supports_3d,
        allow_channels=m.supports_multichannel,
    )
    spatial_ndim = arr.ndim - (channel_axis is not None)
    if spacing is not None:
        spacing = tuple(float(s) for s in np.atleast_1d(spacing))
        if len(spacing) != spatial_ndim or min(spacing) <= 0:
            raise ValueError(
                f"spacing must give one positive size per spatial axis ({spatial_ndim}); "
                f"got {spacing}."
            )
    labels = m.func(
        arr,
        channel_axis=-1 if channel_axis is not None else None,
        spacing=spacing,
        rng=rng,
        **{**m.defaults(), **params},
    )
    labels = np.asarray(labels)
    expected = arr.shape[:-1] if channel_axis is not None else arr.shape
    if labels.shape != expected:  # pragma: no cover - a method bug, not a user error
        raise RuntimeError(
            f"method {m.name!r} returned labels of shape {labels.shape}, expected {expected}."
        )
    return labels
