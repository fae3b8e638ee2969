"""The contract every registered method keeps (``docs/architecture.md``), checked for each one.

Run over ``physeg.methods()``, so a newly registered method is covered without writing a test:
the same seed gives the same labels, the input is not modified, the result is an integer label
image of the input's spatial shape, and declared colour / 3D support is honoured (or the input is
refused with a one-line error naming what was expected). Methods that need training are trained
for a few iterations on two tiny images first. ``FAST`` only shortens runs; it never changes
which code path is taken.
"""

from __future__ import annotations

import numpy as np
import pytest

import physeg

FAST = {
    "chan-vese": {"max_iter": 30},
    "kinetic": {"t_final": 1.0},
    "dynaseg": {"channels": 8, "max_iter": 4, "patience": 0, "scale": 1.0, "threads": 1},
}
FIT_FAST = {"widths": "4,8", "iterations": 2, "batch_size": 2, "patch": 16, "val_fraction": 0.0,
            "threads": 1}
TORCH_METHODS = {"dynaseg", "msnet", "unet", "pde-unet"}


def _image(shape, channels=None, seed=0):
    gen = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    obj = sum(g ** 2 for g in grids) < 0.4
    img = 0.25 + 0.5 * obj + gen.normal(0, 0.05, shape)
    if channels:
        img = np.stack([img * (1 - 0.2 * c) for c in range(channels)], axis=-1)
    return img, obj.astype(np.uint8)


def _segmenter(name):
    """A function image, channel_axis, rng -> labels for method ``name`` (trained if needed)."""
    m = physeg.get_method(name)
    if m.func is not None:
        params = FAST.get(name, {})
        return lambda img, channel_axis, rng: physeg.segment(
            img, method=name, channel_axis=channel_axis, rng=rng, **params)

    def trained(img, channel_axis, rng):
        spatial = img.shape[:-1] if channel_axis is not None else img.shape
        ch = img.shape[-1] if channel_axis is not None else None
        pairs = [_image(spatial, ch, seed=s) for s in (1, 2)]
        model = physeg.fit(name, [p[0] for p in pairs], [p[1] for p in pairs],
                           rng=rng, **FIT_FAST)
        return model.predict(img, channel_axis=channel_axis)

    return trained


def _cases(m):
    """(label, spatial shape, channels) the method declares it supports."""
    out = [("grey 2D", (24, 28), None)]
    if m.supports_multichannel:
        out.append(("RGB 2D", (24, 28), 3))
    if m.supports_3d:
        out.append(("grey 3D", (8, 16, 16), None))
    return out


NAMES = sorted(physeg.methods())


def _skip_without_torch(name):
    if name in TORCH_METHODS:
        pytest.importorskip("torch")


@pytest.mark.parametrize("name", NAMES)
def test_labels_shape_dtype_seed_and_input_untouched(name):
    _skip_without_torch(name)
    m = physeg.get_method(name)
    run = _segmenter(name)
    for what, shape, channels in _cases(m):
        img, _ = _image(shape, channels)
        before = img.copy()
        cax = -1 if channels else None
        a = run(img, cax, 3)
        b = run(img, cax, 3)
        np.testing.assert_array_equal(img, before, err_msg=f"{name} modified its {what} input")
        assert a.shape == shape, f"{name} on {what}: labels {a.shape}, expected {shape}"
        assert np.issubdtype(a.dtype, np.integer), f"{name} on {what}: dtype {a.dtype}"
        assert a.min() >= 0, f"{name} on {what}: negative label"
        np.testing.assert_array_equal(a, b, err_msg=f"{name} on {what}: same seed, other labels")


@pytest.mark.parametrize("name", [n for n in NAMES if not physeg.get_method(n).supports_3d])
def test_undeclared_3d_is_refused_clearly(name):
    volume, _ = _image((6, 12, 12))
    m = physeg.get_method(name)
    with pytest.raises(ValueError) as err:
        if m.func is not None:
            physeg.segment(volume, method=name, **FAST.get(name, {}))
        else:  # pragma: no cover - every trained method supports 3D today
            physeg.fit(name, [volume], [volume > 0.5])
    message = str(err.value)
    assert "\n" not in message and "2D" in message and "(6, 12, 12)" in message


def test_undeclared_colour_is_refused_clearly(monkeypatch):
    """Every method registered today takes colour, so the rule is checked on a grey-only one."""
    from physeg.families import _registry

    grey_only = _registry.Method(
        name="grey-only-contract", func=lambda image, **kw: (image > 0.5).astype(np.uint8),
        params=(), summary="test-only", supports_multichannel=False)
    monkeypatch.setitem(_registry._REGISTRY, grey_only.name, grey_only)
    img, _ = _image((16, 16), 3)
    with pytest.raises(ValueError) as err:
        physeg.segment(img, method=grey_only.name, channel_axis=-1)
    assert "\n" not in str(err.value) and "channel" in str(err.value)


def test_every_method_declares_its_parameters_with_defaults_in_range():
    for name, m in physeg.methods().items():
        for p in m.params + m.fit_params:
            assert p.help, f"{name}.{p.name} has no help text"
            if p.default is not None:
                assert p.convert(p.default) == p.default, f"{name}.{p.name} default invalid"
