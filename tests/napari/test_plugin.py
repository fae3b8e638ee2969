"""The napari plugin (physeg.napari): manifest, sample data and the dock widget in a real viewer.

Needs ``physeg[test-napari]`` and a display: ``.ci/run`` runs the suite under Xvfb
(``xvfb-run``) and sets ``PHYSEG_NAPARI_TESTS=required``, so there these tests fail instead
of skipping when something is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

REQUIRED = os.environ.get("PHYSEG_NAPARI_TESTS") == "required"


def _need(module: str):
    if REQUIRED:
        return __import__(module)
    return pytest.importorskip(module)


napari = _need("napari")
_need("pytestqt")
if not REQUIRED and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    # napari's canvas needs an OpenGL context, which Qt's offscreen platform does not give
    pytest.skip("no display for napari's OpenGL canvas (run under xvfb-run)",
                allow_module_level=True)

import physeg  # noqa: E402
from physeg.data.noise import noisy_shape  # noqa: E402
from physeg.napari import _sample  # noqa: E402
from physeg.napari._widget import PhysegWidget, fit_takes_scribbles  # noqa: E402

# napari and its dependencies warn about their own deprecations (pydantic, vispy, ...)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::PendingDeprecationWarning",
                                        "ignore::FutureWarning")

WAIT_MS = 120_000


@pytest.fixture
def viewer(qtbot):
    v = napari.Viewer(show=False)
    yield v
    v.close()


@pytest.fixture
def widget(viewer, qtbot):
    w = PhysegWidget(viewer)
    viewer.window.add_dock_widget(w, name="physeg")
    return w


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def test_import_physeg_imports_no_gui():
    code = ("import sys, physeg; physeg.methods(); "
            "bad = [m for m in ('napari', 'qtpy', 'magicgui', 'PyQt6', 'physeg.napari') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_manifest_is_valid_and_names_the_widget_and_samples():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("physeg")
    assert [w.display_name for w in manifest.contributions.widgets] == ["Segment"]
    assert {s.key for s in manifest.contributions.sample_data} == {
        "triangle", "colour_circle", "ellipsoids"}
    for command in manifest.contributions.commands:
        assert callable(command.exec) or command.python_name  # importable names
        module, _, name = command.python_name.partition(":")
        assert callable(getattr(__import__(module, fromlist=[name]), name))


def test_sample_data_are_images_with_exact_truths():
    for make in (_sample.noisy_triangle, _sample.colour_circle, _sample.ellipsoids):
        (image, ikw, itype), (truth, tkw, ttype) = make()
        assert (itype, ttype) == ("image", "labels")
        spatial = image.shape[:-1] if ikw.get("rgb") else image.shape
        assert truth.shape == spatial and set(np.unique(truth)) == {0, 1}


def test_parameter_widgets_come_from_the_registry(widget):
    for name, m in physeg.methods().items():
        widget.method.value = name
        shown = {w.name: w for w in widget.params}
        for p in m.params:
            w = shown[p.name]
            assert p.help in w.tooltip and p.type in w.tooltip
            if p.type == "int" and p.default is not None and not p.choices:
                assert w.value == p.default
                assert (p.low is None or w.min == p.low) and (p.high is None or w.max == p.high)
                assert w.step == (2 if p.odd else 1)  # kinetic's readout: odd windows only
            if p.choices:
                assert list(w.choices) == list(p.choices)
        for p in m.fit_params:
            if p.name != "unlabelled":
                assert "fit__" + p.name in shown
        assert m.summary in widget.summary.value


def test_widget_segments_heat_like_physeg_segment(widget, viewer, qtbot):
    image, _ = noisy_shape("circle", 64, "gaussian", 2, rng=0)
    viewer.add_image(image, name="circle")
    widget.image.value = "circle"
    widget.method.value = "heat"
    widget.seed.value = 3
    {w.name: w for w in widget.params}["lam"].value = "2.0"
    widget.run_segment()
    _wait_idle(qtbot, widget)
    assert "circle labels" in viewer.layers, widget.status.value
    expected = physeg.segment(image, method="heat", lam=2.0, rng=3)
    np.testing.assert_array_equal(viewer.layers["circle labels"].data, expected)
    # a second run updates the same layer instead of adding one
    widget.run_segment()
    _wait_idle(qtbot, widget)
    assert [la.name for la in viewer.layers] == ["circle", "circle labels"]


def test_colour_layer_goes_as_colour_and_3d_as_the_method_declares(widget, viewer, qtbot):
    (rgb, kw, _), _truth = _sample.colour_circle()
    viewer.add_image(rgb, **kw)
    widget.image.value = kw["name"]
    widget.method.value = "heat"
    widget.run_segment()
    _wait_idle(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers[kw["name"] + " labels"].data,
                                  physeg.segment(rgb, method="heat", channel_axis=-1, rng=0))
    (vol, vkw, _), _vtruth = _sample.ellipsoids()
    viewer.add_image(vol, **vkw)
    widget.image.value = vkw["name"]
    widget.method.value = "chan-vese"  # 2D only: the plane the viewer shows
    viewer.dims.set_current_step(0, 11)
    widget.run_segment()
    _wait_idle(qtbot, widget)
    got = viewer.layers[vkw["name"] + " labels"].data
    assert got.shape == vol.shape and "plane 11" in widget.status.value
    np.testing.assert_array_equal(got[11], physeg.segment(vol[11], method="chan-vese", rng=0))
    assert not got[:11].any() and not got[12:].any()
    widget.method.value = "otsu"  # 2D/3D: the whole volume, in the same layer
    widget.run_segment()
    _wait_idle(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers[vkw["name"] + " labels"].data,
                                  physeg.segment(vol, method="otsu", rng=0))
    # a 2D model applied to every image skips the volume and says so
    widget.model = physeg.Model("chan-vese")  # a model of a 2D-only method
    widget.run_apply(every=True)
    _wait_idle(qtbot, widget)
    assert widget.status.value == ("applied the model to 1 image(s); skipped (3D, the model "
                                   f"is 2D): {vkw['name']}.")


def test_fit_from_a_labels_layer_segments_a_second_image(widget, viewer, qtbot, tmp_path):
    first, mask = noisy_shape("square", 64, "gaussian", 2, rng=1)
    second, truth = noisy_shape("circle", 64, "gaussian", 2, rng=2)
    viewer.add_image(first, name="first")
    viewer.add_image(second, name="second")
    widget.method.value = "heat"
    m = physeg.get_method("heat")
    if fit_takes_scribbles(m):
        # scribbles: 0 = unlabelled, 1 = background strokes, 2 = object strokes
        strokes = np.zeros_like(mask, dtype=np.uint8)
        strokes[2:6, 4:60] = 1
        strokes[58:62, 4:60] = 1
        strokes[30:34, 24:40] = 2
        assert np.all(mask[strokes == 2] == 1) and np.all(mask[strokes == 1] == 0)
    else:  # a fit that takes full masks only
        strokes = mask.astype(np.uint8)
    viewer.add_labels(strokes, name="strokes")
    widget.image.value = "first"
    widget.mask_layer.value = "strokes"
    widget.run_fit()
    _wait_idle(qtbot, widget)
    assert widget.model is not None, widget.status.value
    assert widget.model.method == "heat"
    assert widget.progress.value == widget.progress.max  # the fit reported its steps
    widget.image.value = "second"
    widget.run_apply(every=True)
    _wait_idle(qtbot, widget)
    got = viewer.layers["second labels"].data
    np.testing.assert_array_equal(got, widget.model.predict(second))
    assert physeg.metrics.dice(got, truth, average="binary") > 0.9
    assert "first labels" in viewer.layers  # every open image
    path = widget.save_model(tmp_path / "model.json")
    with pytest.raises(FileExistsError):
        widget.save_model(tmp_path / "model.json")
    np.testing.assert_array_equal(physeg.load(path).predict(second), got)
    widget.model = None
    widget.load_model(path)
    assert widget.model.method == "heat" and widget.apply_current.enabled


def test_cancel_stops_a_fit_at_its_next_step(widget, viewer, qtbot):
    pytest.importorskip("torch")
    image, mask = noisy_shape("square", 32, "gaussian", 1, rng=0)
    viewer.add_image(image, name="im")
    viewer.add_labels(mask.astype(np.uint8), name="mask")
    widget.method.value = "unet"
    shown = {w.name: w for w in widget.params}
    shown["fit__iterations"].value = 100_000  # far longer than the test: it must be cancelled
    shown["fit__widths"].value = "4,8"
    shown["fit__threads"].value = 1
    widget.image.value, widget.mask_layer.value = "im", "mask"
    widget.run_fit()
    qtbot.waitUntil(lambda: widget.progress.value >= 1, timeout=WAIT_MS)
    assert widget.progress.max == 100_000 and widget.cancel_button.enabled
    widget.cancel()
    _wait_idle(qtbot, widget)
    assert widget.model is None and widget.status.value == "cancelled."


def test_user_errors_go_to_the_status_line(widget, viewer):
    widget.method.value = "heat"
    widget.run_segment()
    assert widget.status.value.startswith("error: no Image layer selected")
    viewer.add_image(np.zeros((16, 16)) + np.eye(16), name="im")
    widget.image.value = "im"
    {w.name: w for w in widget.params}["lam"].value = "-3"
    widget.run_segment()
    assert "out of range" in widget.status.value and widget.worker is None
    widget.run_fit()
    assert widget.status.value.startswith("error: no Labels layer selected")
