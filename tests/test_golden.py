"""Golden labels: every registered method on fixed synthetic inputs gives the recorded labels.

Recorded before the package restructuring (issue 13) so that moving code is checked to change
no output, byte for byte. The inputs are built here with plain numpy (no physeg helper), and
only the public API is called, so the test does not depend on where the code lives.

A change that is *meant* to alter labels re-records the table::

    PHYSEG_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py

and says so in its commit message.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import physeg

GOLDEN = Path(__file__).with_name("golden_labels.json")
RECORD = os.environ.get("PHYSEG_RECORD_GOLDEN") == "1"


def _disc(size=40, seed=0, channels=None, noise=0.15):
    gen = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2) < (size * 0.3) ** 2
    img = 0.2 + 0.6 * mask
    if channels:
        img = np.stack([img, 1 - 0.5 * img, 0.5 * img + 0.2], -1)[..., :channels]
    return img + gen.normal(0, noise, img.shape), mask.astype(np.uint8)


def _three(size=36, seed=1):
    gen = np.random.default_rng(seed)
    truth = (np.arange(size)[None, :] * 3 // size).repeat(size, 0)
    return truth / 2 + gen.normal(0, 0.1, (size, size)), truth.astype(np.uint8)


def _volume(size=20, seed=2):
    gen = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    mask = ((zz - size / 2) ** 2 + (yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2
    return 0.2 + 0.6 * mask + gen.normal(0, 0.1, mask.shape), mask.astype(np.uint8)


TINY_NET = dict(widths="4,8", iterations=60, lr=0.01, batch_size=2, patch=32, val_fraction=0.0,
                threads=1, rng=0)
DYNA_FAST = dict(channels=8, max_iter=6, patience=0, scale=1.0, threads=1)

# (case name, how to get labels); each callable returns an integer label image.
CASES = {
    "otsu-grey": lambda: physeg.segment(_disc()[0], method="otsu"),
    "otsu-rgb": lambda: physeg.segment(_disc(channels=3)[0], method="otsu", channel_axis=-1),
    "otsu-3class": lambda: physeg.segment(_three()[0], method="otsu", classes=3),
    "otsu-3d": lambda: physeg.segment(_volume()[0], method="otsu"),
    "chan-vese-grey": lambda: physeg.segment(_disc(32)[0], method="chan-vese", max_iter=40),
    "chan-vese-rgb": lambda: physeg.segment(_disc(32, channels=3)[0], method="chan-vese",
                                            channel_axis=-1, max_iter=40),
    "heat-grey": lambda: physeg.segment(_disc()[0], method="heat"),
    "heat-rgb": lambda: physeg.segment(_disc(channels=3)[0], method="heat", channel_axis=-1,
                                       rng=0),
    "heat-3class": lambda: physeg.segment(_three()[0], method="heat", classes=3),
    "heat-3d": lambda: physeg.segment(_volume()[0], method="heat"),
    "heat-kmeans": lambda: physeg.segment(_three()[0], method="heat", classes=3, init="kmeans",
                                          rng=3),
    "heat-reaction": lambda: physeg.segment(_disc()[0], method="heat", reaction=0.5),
    "heat-fit": lambda: physeg.fit("heat", [_disc(seed=4)[0]], [_disc(seed=4)[1]]).predict(
        _disc(seed=5)[0]),
    "kinetic-grey": lambda: physeg.segment(_disc(32)[0], method="kinetic", rng=0),
    "kinetic-rgb": lambda: physeg.segment(_disc(32, channels=3)[0], method="kinetic",
                                          channel_axis=-1, rng=1),
    "kinetic-3class": lambda: physeg.segment(_three(32)[0], method="kinetic", classes=3, rng=2),
    "kinetic-fit": lambda: physeg.fit("kinetic", [_disc(32, seed=4)[0]], [_disc(32, seed=4)[1]],
                                      n_agents=4, max_iter=2, fit_size=16, rng=0).predict(
        _disc(32, seed=5)[0], rng=0),
    "dynaseg-fast": lambda: physeg.segment(_disc(32, channels=3)[0], method="dynaseg",
                                           channel_axis=-1, rng=0, preset="fast",
                                           **DYNA_FAST),
    "dynaseg-regions": lambda: physeg.segment(_disc(32, channels=3)[0], method="dynaseg",
                                              channel_axis=-1, rng=0, preset="regions",
                                              **DYNA_FAST),
    "dynaseg-superpixels": lambda: physeg.segment(_disc(32, channels=3)[0], method="dynaseg",
                                                  channel_axis=-1, rng=0, preset="superpixels",
                                                  **DYNA_FAST),
    "dynaseg-scf-grey": lambda: physeg.segment(_disc(32)[0], method="dynaseg", variant="scf",
                                               rng=1, preset="fast", **DYNA_FAST),
    "msnet": lambda: physeg.fit("msnet", [_disc(32, seed=s)[0] for s in (6, 7)],
                                [_disc(32, seed=s)[1] for s in (6, 7)], **TINY_NET).predict(
        _disc(32, seed=8)[0]),
    "unet": lambda: physeg.fit("unet", [_disc(32, seed=s)[0] for s in (6, 7)],
                               [_disc(32, seed=s)[1] for s in (6, 7)], **TINY_NET).predict(
        _disc(32, seed=8)[0]),
    "pde-unet": lambda: physeg.fit("pde-unet", [_disc(32, seed=s)[0] for s in (6, 7)],
                                   [_disc(32, seed=s)[1] for s in (6, 7)],
                                   **TINY_NET).predict(_disc(32, seed=8)[0]),
}

TORCH_CASES = ("dynaseg", "msnet", "unet", "pde-unet")


def _digest(labels: np.ndarray) -> dict:
    labels = np.asarray(labels)
    canonical = np.ascontiguousarray(labels.astype(np.int64))
    return {
        "shape": list(labels.shape),
        "sha256": hashlib.sha256(canonical.tobytes()).hexdigest(),
        "counts": np.bincount(canonical.ravel()).tolist(),
    }


def _table() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def test_every_registered_method_has_a_golden_case():
    # a case's name starts with its method's name ("heat-rgb" -> heat)
    missing = [m for m in physeg.methods() if not any(c.startswith(m + "-") or c == m
                                                       for c in CASES)]
    assert not missing, f"add golden cases for {missing}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_labels_match_the_recording(case):
    if case.startswith(TORCH_CASES):
        pytest.importorskip("torch")
    got = _digest(CASES[case]())
    if RECORD:
        table = _table()
        table[case] = got
        GOLDEN.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        return
    table = _table()
    assert case in table, f"no recording for {case}; run with PHYSEG_RECORD_GOLDEN=1"
    assert got == table[case]
