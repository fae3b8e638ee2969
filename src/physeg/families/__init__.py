"""The method families: one package (or module) per model, each registering itself once.

``baselines`` (Otsu, Chan–Vese), ``heat`` (threshold dynamics), ``kinetic`` (consensus particle
model), ``dynaseg`` (per-image unsupervised CNN) and ``nets`` (trained networks: MSNet, U-Net,
PDE-U-Net). A family imports :mod:`physeg.families._registry`, the foundation
(:mod:`physeg._validate`, :mod:`physeg.io`) and the shared numerics (:mod:`physeg.metrics`,
:mod:`physeg.data`), never another family, :mod:`physeg.api` or anything above it; the
import-linter contract in ``pyproject.toml`` checks this. See ``docs/architecture.md``.

The package is called ``families`` rather than ``methods`` because ``physeg.methods()`` is the
public function that lists the registered methods; a subpackage of the same name would replace
that function as an attribute of ``physeg`` as soon as it was imported.
"""
