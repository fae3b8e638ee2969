"""The registry and the one method contract."""

import json

import numpy as np
import pytest

import physeg
from physeg.api import Param


def _square(n=32):
    img = np.zeros((n, n), dtype=np.float32)
    img[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 1.0
    return img


def test_segment_otsu_square_exact():
    img = _square()
    labels = physeg.segment(img, method="otsu")
    np.testing.assert_array_equal(labels, (img > 0.5).astype(np.uint8))


def test_methods_lists_baselines_with_params():
    table = physeg.methods()
    assert {"otsu", "chan-vese"} <= set(table)
    assert any(p.name == "classes" for p in table["otsu"].params)


def test_unknown_method_suggests():
    with pytest.raises(ValueError, match="Did you mean 'otsu'"):
        physeg.segment(_square(), method="otsuu")


def test_unknown_param_suggests():
    with pytest.raises(ValueError, match="Did you mean 'classes'"):
        physeg.segment(_square(), method="otsu", clases=3)


def test_param_range_and_cli_strings():
    p = Param("k", "int", 2, "k", low=2, high=8)
    assert p.convert("3") == 3
    with pytest.raises(ValueError, match="out of range"):
        p.convert(9)
    with pytest.raises(ValueError, match="expects a int"):
        p.convert("abc")
    b = Param("flag", "bool", False, "f")
    assert b.convert("true") is True


def test_bad_images_have_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        physeg.segment(np.full((8, 8), np.nan), method="otsu")
    with pytest.raises(ValueError, match="empty"):
        physeg.segment(np.zeros((0, 4)), method="otsu")
    with pytest.raises(TypeError, match="dtype"):
        physeg.segment(np.array([["a", "b"], ["c", "d"]]), method="otsu")
    with pytest.raises(ValueError, match="channel_axis=-1"):
        physeg.segment(np.zeros((8, 8, 3)), method="chan-vese")
    with pytest.raises(ValueError, match="constant"):
        physeg.segment(np.ones((8, 8)), method="otsu")


def test_input_not_modified():
    img = _square()
    before = img.copy()
    physeg.segment(img, method="chan-vese")
    np.testing.assert_array_equal(img, before)


def test_fit_on_unfittable_method_is_clear():
    with pytest.raises(ValueError, match="nothing to fit"):
        physeg.fit("otsu", [_square()], [_square().astype(int)])


def test_model_json_round_trip(tmp_path):
    m = physeg.Model("otsu", {"classes": 2})
    path = m.save(tmp_path / "m.json")
    assert json.loads(path.read_text())["method"] == "otsu"
    m2 = physeg.load(path)
    np.testing.assert_array_equal(m2.predict(_square()), physeg.segment(_square(), "otsu"))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        physeg.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a physeg model file: .*malformed JSON"):
        physeg.load(bad)


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    """A method whose extra is not installed fails before any work, saying how to install it."""
    from physeg import api
    from physeg.families import _registry

    m = api.Method(
        name="needs-missing-extra",
        func=lambda image, **kw: np.zeros(image.shape[:2], np.uint8),
        params=(),
        summary="test-only",
        requires=("physeg_no_such_module",),
    )
    monkeypatch.setitem(_registry._REGISTRY, m.name, m)
    with pytest.raises(ImportError, match="pip install physeg_no_such_module"):
        physeg.segment(_square(), method=m.name)


@pytest.mark.parametrize("method", ["otsu", "heat", "kinetic"])
@pytest.mark.parametrize("channels", [3, 4])
def test_rgb_array_without_channel_axis_is_refused_not_read_as_a_volume(method, channels):
    from physeg.data.synthetic import shape_image

    rgb, mask = shape_image("circle", 40, channels=3, shape_value=(0.9, 0.7, 0.5),
                            background_value=(0.1, 0.2, 0.3))
    rgb = np.round(rgb * 255).astype(np.uint8)
    if channels == 4:
        rgb = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    with pytest.raises(ValueError, match=r"shape \(40, 40, %d\) looks like a colour image.*"
                                         r"pass channel_axis=-1" % channels):
        physeg.segment(rgb, method=method, rng=0)
    labels = physeg.segment(rgb, method=method, channel_axis=-1, rng=0)
    assert labels.shape == (40, 40)
    assert physeg.metrics.dice(labels, mask, average="binary") > 0.95


def test_real_volumes_and_channels_first_still_work():
    vol = np.zeros((3, 16, 16), np.float32)  # 3 planes of 16 x 16: a volume, planes first
    vol[:, 4:12, 4:12] = 1.0
    assert physeg.segment(vol, method="otsu").shape == (3, 16, 16)
    rgb_first = np.moveaxis(np.stack([_square()] * 3, axis=-1), -1, 0)
    assert physeg.segment(rgb_first, method="otsu", channel_axis=0).shape == (32, 32)


def test_fit_progress_protocol_reaches_fits_that_declare_it():
    pytest.importorskip("cbx")
    from physeg.api import fit_reports_progress
    from physeg.data.noise import noisy_shape

    img, mask = noisy_shape("circle", 32, "gaussian", 1, rng=0)
    calls = []
    physeg.fit("kinetic", [img], [mask], max_iter=3, n_agents=4, rng=0,
               progress=lambda done, total, msg: calls.append((done, total, msg)))
    assert [(d, t) for d, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert calls[-1][2].startswith("CBO iteration 3/3, best dice loss ")
    # a fit without a progress parameter is called as before (its **kwargs do not count)
    heat = physeg.get_method("heat")
    if not fit_reports_progress(heat):
        model = physeg.fit("heat", [img], [mask], progress=lambda *a: calls.append(a))
        assert model.method == "heat" and len(calls) == 3


def test_fit_progress_exception_stops_the_fit():
    pytest.importorskip("cbx")
    from physeg.data.noise import noisy_shape

    img, mask = noisy_shape("circle", 32, "gaussian", 1, rng=0)

    class Stop(Exception):
        pass

    def stop_at_two(done, total, msg):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        physeg.fit("kinetic", [img], [mask], max_iter=5, n_agents=4, rng=0,
                   progress=stop_at_two)
