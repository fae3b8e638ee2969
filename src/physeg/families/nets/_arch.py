"""Architecture registry: network classes buildable by name, for training and for checkpoints.

A checkpoint names its architecture (``"msnet"``, ``"unet"``) and stores the class's full
keyword configuration; :func:`build_network` rebuilds the torch module from the two. The
registry holds ``"module:Class"`` strings, imported on first use, so that this module (and the
method registry) imports without torch. Only classes inside ``physeg.families.nets`` can be
registered: loading a checkpoint must never import arbitrary code.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

__all__ = ["register_arch", "build_network", "full_config", "count_parameters"]

_ARCHS: dict[str, str] = {
    "msnet": "physeg.families.nets._msnet_torch:MSNet",
    "unet": "physeg.families.nets._unet_torch:UNet",
}


def register_arch(name: str, target: str) -> None:
    """Make a network class buildable by name (``target``: ``"physeg.families.nets.mod:Class"``).

    Raises
    ------
    ValueError
        ``target`` outside ``physeg.families.nets`` or without ``:Class``.
    """
    if not target.startswith("physeg.families.nets.") or ":" not in target:
        raise ValueError(
            "architecture target must look like 'physeg.families.nets.<module>:<Class>'; "
            f"got {target!r}."
        )
    _ARCHS[name] = target


def _network_class(arch: str) -> type:
    if arch not in _ARCHS:
        raise ValueError(f"unknown network architecture {arch!r}; known: {sorted(_ARCHS)}.")
    module, cls = _ARCHS[arch].split(":")
    return getattr(importlib.import_module(module), cls)


def build_network(arch: str, **config: Any):
    """Instantiate the torch module registered as ``arch`` with keyword ``config``."""
    return _network_class(arch)(**config)


def full_config(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` completed with the network class's keyword defaults.

    Checkpoints store this, so that a later change of a class default cannot change how an
    old checkpoint is rebuilt.
    """
    signature = inspect.signature(_network_class(arch).__init__)
    out = {name: p.default for name, p in signature.parameters.items()
           if name != "self" and p.default is not inspect.Parameter.empty
           and p.kind is not inspect.Parameter.VAR_KEYWORD}
    out.update(config)
    return out


def count_parameters(net: Any) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))
