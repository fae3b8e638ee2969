"""The ``physeg`` command line, on files the tests create (CliRunner, in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import physeg
from physeg import io as pio
from physeg.api import Method, Model, Param
from physeg.cli import app, parse_params
from physeg.data.synthetic import shape_image

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _u8(img):
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    """Three clean shapes as uint8 PNGs (one RGB) plus their exact masks."""
    src = tmp_path / "in"
    gt = tmp_path / "gt"
    truth = {}
    for name, shape in (("a", "square"), ("b", "circle"), ("c", "triangle")):
        img, mask = shape_image(shape, 48, shape_value=0.8, background_value=0.2)
        if name == "c":
            img, mask = shape_image(shape, 48, channels=3, shape_value=(0.9, 0.7, 0.5),
                                    background_value=(0.1, 0.2, 0.3))
        pio.write_image(src / f"{name}.png", _u8(img))
        pio.write_labels(gt / f"{name}.png", mask)
        truth[name] = mask
    return src, gt, truth


def test_help_and_methods_listing():
    res = _invoke("--help")
    assert res.exit_code == 0
    for cmd in ("segment", "fit", "evaluate", "methods", "demo"):
        assert cmd in res.output
    res = _invoke("methods")
    assert res.exit_code == 0
    assert "otsu" in res.output and "classes" in res.output and "chan-vese" in res.output
    res = _invoke("methods", "--json")
    doc = json.loads(res.stdout)
    assert set(doc) == set(physeg.methods())
    classes = {p["name"]: p for p in doc["otsu"]["params"]}["classes"]
    assert classes == {"name": "classes", "type": "int", "default": 2, "low": 2, "high": 8,
                       "choices": None, "help": physeg.get_method("otsu").param("classes").help}


def test_segment_folder_exact_labels_and_overlays(images, tmp_path):
    src, _, truth = images
    out = tmp_path / "out"
    res = _invoke("segment", src, "-o", out, "--method", "otsu", "--overlay")
    assert res.exit_code == 0, res.output
    assert "segmented 3 of 3" in res.output
    for name, mask in truth.items():
        lab = pio.read_mask(out / f"{name}.png")
        np.testing.assert_array_equal(lab, mask.astype(np.uint8))  # clean shapes: exact
        ov = pio.read_image(out / "overlays" / f"{name}.png")
        legend = physeg.overlay.LEGEND_ROW  # one row: "labels: [] 1"
        assert ov.shape == (mask.shape[0] + legend, mask.shape[1], 3) and ov.dtype == np.uint8


def test_segment_file_and_glob_inputs(images, tmp_path):
    src, _, truth = images
    out = tmp_path / "out"
    res = _invoke("segment", src / "a.png", str(src / "[bc].png"), "-o", out)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png", "c.png"]


def test_param_is_passed(images, tmp_path):
    src, _, truth = images
    out = tmp_path / "out"
    res = _invoke("segment", src / "a.png", "-o", out, "--param", "foreground=dark")
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(pio.read_mask(out / "a.png"), (~truth["a"]).astype(np.uint8))


def test_grey_conversion_for_grey_only_method(images, tmp_path, monkeypatch):
    src, _, truth = images
    seen = {}

    def func(image, *, channel_axis, spacing, rng, **kw):
        seen["shape"], seen["axis"], seen["dtype"] = image.shape, channel_axis, image.dtype
        return (image > 0.5).astype(np.uint8)

    m = Method("grey-only", func, (), "test", supports_multichannel=False)
    monkeypatch.setitem(physeg.families._registry._REGISTRY, "grey-only", m)
    res = _invoke("segment", src / "c.png", "-o", tmp_path / "o", "-m", "grey-only")
    assert res.exit_code == 0, res.output
    assert seen == {"shape": (48, 48), "axis": None, "dtype": np.float32}
    # mean of (0.9, 0.7, 0.5) = 0.7 inside, of (0.1, 0.2, 0.3) = 0.2 outside
    np.testing.assert_array_equal(pio.read_mask(tmp_path / "o" / "c.png"), truth["c"])


def test_corrupt_file_is_reported_and_skipped(images, tmp_path):
    src, _, truth = images
    (src / "bad.png").write_bytes(b"this is not a png")
    out = tmp_path / "out"
    res = _invoke("segment", src, "-o", out)
    assert res.exit_code == 1
    assert "bad.png" in res.output and "1 failed" in res.output
    assert "segmented 3 of 4" in res.output
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png", "c.png"]


def test_refuses_to_overwrite_without_flag(images, tmp_path):
    src, _, _ = images
    out = tmp_path / "out"
    assert _invoke("segment", src / "a.png", "-o", out).exit_code == 0
    pio.write_labels(out / "a.png", np.zeros((48, 48), np.uint8), overwrite=True)
    res = _invoke("segment", src / "a.png", "-o", out)
    assert res.exit_code == 1 and "already exists" in res.output and "--overwrite" in res.output
    assert pio.read_mask(out / "a.png").max() == 0  # untouched
    res = _invoke("segment", src / "a.png", "-o", out, "--overwrite")
    assert res.exit_code == 0
    assert pio.read_mask(out / "a.png").max() == 1


def test_never_writes_over_an_input(tmp_path):
    img, _ = shape_image("square", 32, shape_value=0.8, background_value=0.2)
    pio.write_labels(tmp_path / "x.png", _u8(img) > 128)  # an input that looks like labels
    before = (tmp_path / "x.png").read_bytes()
    for extra in ([], ["--overwrite"]):
        res = _invoke("segment", tmp_path / "x.png", "-o", tmp_path, *extra)
        assert res.exit_code == 1
        assert "input" in res.output
        assert (tmp_path / "x.png").read_bytes() == before
    # Another input in the batch with that output name is protected as well.
    pio.write_image(tmp_path / "y.tif", _u8(img))
    pio.write_image(tmp_path / "sub" / "x.tif", _u8(img))
    res = _invoke("segment", tmp_path / "x.png", tmp_path / "sub" / "x.tif", "-o", tmp_path,
                  "--overwrite")
    assert res.exit_code == 1
    assert (tmp_path / "x.png").read_bytes() == before


def test_same_stem_inputs_do_not_clobber_each_other(tmp_path):
    img, _ = shape_image("square", 32)
    pio.write_image(tmp_path / "in" / "s.png", _u8(img))
    pio.write_image(tmp_path / "in" / "s.tif", _u8(1 - img))
    res = _invoke("segment", tmp_path / "in", "-o", tmp_path / "out", "--overwrite")
    assert res.exit_code == 1
    assert "same output" in res.output and "segmented 1 of 2" in res.output


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--param", "classes3"], "KEY=VALUE"),
        (["--param", "classes=99"], "out of range"),
        (["--param", "clases=3"], "Did you mean 'classes'"),
        (["--param", "classes=x"], "expects a int"),
        (["--method", "otsuu"], "Did you mean 'otsu'"),
        (["--channel-axis", "left"], "--channel-axis"),
    ],
)
def test_usage_errors_exit_2_before_work(images, tmp_path, args, msg):
    src, _, _ = images
    out = tmp_path / "out"
    res = _invoke("segment", src, "-o", out, *args)
    assert res.exit_code == 2
    assert msg in res.output
    assert not out.exists()


def test_missing_input_is_usage_error(tmp_path):
    res = _invoke("segment", tmp_path / "nope.png", "-o", tmp_path / "out")
    assert res.exit_code == 2 and "nope.png" in res.output


def test_parse_params():
    assert parse_params(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ValueError, match="given twice"):
        parse_params(["a=1", "a=2"])


def _fit_threshold(images, masks, **params):
    """Learns the midpoint between the mean foreground and background intensities."""
    fg = np.mean([img[m > 0].mean() for img, m in zip(images, masks, strict=True)])
    bg = np.mean([img[m == 0].mean() for img, m in zip(images, masks, strict=True)])
    return Model("test-threshold", {"threshold": float((fg + bg) / 2)})


def _threshold(image, *, channel_axis, spacing, rng, threshold=0.5):
    return (np.asarray(image, dtype=float) > threshold).astype(np.uint8)


def test_fit_then_segment_with_model(images, tmp_path, monkeypatch):
    m = Method("test-threshold", _threshold,
               (Param("threshold", "float", 0.5, "cut", low=0, high=255),), "test",
               fit_func=_fit_threshold, supports_multichannel=False)
    monkeypatch.setitem(physeg.families._registry._REGISTRY, "test-threshold", m)
    src, gt, truth = images
    (src / "c.png").unlink()  # grey only
    (gt / "c.png").unlink()
    model = tmp_path / "model.json"
    res = _invoke("fit", "--method", "test-threshold", "--images", src, "--masks", gt,
                  "-o", model)
    assert res.exit_code == 0, res.output
    saved = json.loads(model.read_text())
    assert saved["params"]["threshold"] == pytest.approx((204 + 51) / 2)  # uint8 0.8 / 0.2
    res = _invoke("fit", "--method", "test-threshold", "--images", src, "--masks", gt,
                  "-o", model)
    assert res.exit_code == 2 and "already exists" in res.output
    res = _invoke("segment", src, "-o", tmp_path / "out", "--model", model)
    assert res.exit_code == 0, res.output
    for name in ("a", "b"):
        np.testing.assert_array_equal(pio.read_mask(tmp_path / "out" / f"{name}.png"),
                                      truth[name])
    res = _invoke("fit", "--method", "otsu", "--images", src, "--masks", gt, "-o",
                  tmp_path / "m2.json")
    assert res.exit_code == 2 and "nothing to fit" in res.output


def test_demo_writes_and_scores(tmp_path):
    res = _invoke("demo", "-o", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    assert "Dice" in res.output and "coins" in res.output
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"synthetic.png", "synthetic_truth.png", "coins.png", "synthetic_otsu.png",
            "coins_otsu_overlay.png"} <= names
    from physeg.demo import run_demo

    # Scores are real: rerunning gives the same numbers, and they are plausible.
    r = run_demo(tmp_path / "demo", methods=["otsu"], size=64, overwrite=True)
    assert 0.6 < r["synthetic"]["otsu"] < 1.0
    assert 0 < r["coin_sized"]["otsu"] <= r["coins"]["otsu"]


def test_demo_score_does_not_reward_speckle_and_refuses_to_overwrite(tmp_path):
    res = _invoke("demo", "-o", tmp_path / "demo")
    assert res.exit_code == 0
    from physeg.demo import N_COINS, count_objects

    rows = {}
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 4 and cells[0] in ("heat", "otsu"):
            rows[cells[0]] = cells
    assert set(rows) == {"heat", "otsu"}
    for name, (_, _, objects, coin_sized) in rows.items():
        labels = pio.read_mask(tmp_path / "demo" / f"coins_{name}.png")
        assert int(objects) == count_objects(labels)  # every component, specks included
        assert int(coin_sized) == count_objects(labels, 300) <= int(objects)
    # the speckled otsu result (dozens of specks) is now the one far from the 24 coins
    assert abs(int(rows["otsu"][2]) - N_COINS) > abs(int(rows["heat"][2]) - N_COINS)
    assert "every object counts (a speck too)" in res.stdout
    before = (tmp_path / "demo" / "coins.png").stat().st_mtime_ns
    res = runner.invoke(app, ["demo", "-o", str(tmp_path / "demo")])
    assert res.exit_code == 2
    assert f"{tmp_path / 'demo' / 'synthetic.png'} already exists (11 of the demo's 11 files" \
        in " ".join(res.output.split())
    assert "use --overwrite" in res.output
    assert (tmp_path / "demo" / "coins.png").stat().st_mtime_ns == before
    assert _invoke("demo", "-o", tmp_path / "demo", "--overwrite").exit_code == 0


def test_console_script_help():
    # The installed entry point works (subprocess, as a user runs it).
    exe = os.path.join(os.path.dirname(sys.executable), "physeg")
    if not os.path.exists(exe):
        pytest.skip("console script not installed")
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "segment" in res.stdout


def test_evaluate_json_undefined_scores_are_null(images, tmp_path):
    _, gt, truth = images
    pred = tmp_path / "pred"
    for name, mask in truth.items():
        pio.write_labels(pred / f"{name}.png", np.zeros_like(mask))
    res = _invoke("evaluate", pred, gt, "--metrics", "dice,hd95", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # strict JSON: no NaN tokens
    assert "NaN" not in res.stdout
    assert doc["mean"]["dice"] == 0.0
    assert all(r["hausdorff95"] is None for r in doc["images"])


def test_evaluate_scores_labels_as_they_are_and_hints_at_inversion(images, tmp_path):
    _, gt, truth = images
    pred = tmp_path / "pred"
    for name, mask in truth.items():  # the background called the object
        pio.write_labels(pred / f"{name}.png", (1 - mask).astype(np.uint8))
    res = _invoke("evaluate", pred, gt, "--metrics", "dice")
    assert res.exit_code == 0, res.output
    assert "mean dice=0.0000" in res.stdout
    assert "scored: label 1 vs mask>0" in res.stdout
    hints = [ln for ln in res.stderr.splitlines() if ln.startswith("hint:")]
    assert len(hints) == 1
    assert "--param foreground=dark" in hints[0] and "--match" in hints[0]
    # --match: Hungarian matching first; no hint, the other rule named
    res = _invoke("evaluate", pred, gt, "--metrics", "dice,iou", "--match", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["mean"] == {"dice": 1.0, "iou": 1.0}
    assert doc["scoring"] == {"match": True, "rule": "scored: Hungarian-matched labels"}
    assert "hint:" not in res.stderr
    # labels as they are and right: no hint
    for name, mask in truth.items():
        pio.write_labels(pred / f"{name}.png", mask, overwrite=True)
    res = _invoke("evaluate", pred, gt, "--metrics", "iou", "--json")
    doc = json.loads(res.stdout)
    assert doc["mean"]["iou"] == 1.0 and "hint" not in doc and "hint:" not in res.stderr


def test_segment_volume_tiff(tmp_path):
    from physeg.data.synthetic import ellipsoids_volume

    vol, lab = ellipsoids_volume((16, 24, 24), n=2, rng=0, foreground=0.8, background=0.2)
    pio.write_image(tmp_path / "vol.tif", vol)
    res = _invoke("segment", tmp_path / "vol.tif", "-o", tmp_path / "out", "--overlay")
    assert res.exit_code == 0, res.output
    out = pio.read_mask(tmp_path / "out" / "vol.tif")  # 3D labels go to TIFF
    np.testing.assert_array_equal(out, lab)
    ov = pio.read_image(tmp_path / "out" / "overlays" / "vol.png")
    assert ov.shape == (24 + physeg.overlay.LEGEND_ROW, 24, 3)  # middle plane + legend


def test_overlay_colours_and_boundaries():
    from physeg.overlay import PALETTE, overlay

    img = np.full((10, 10), 100, np.uint8)
    lab = np.zeros((10, 10), np.int32)
    lab[2:8, 2:8] = 1
    lab[4:6, 4:6] = 2
    rgb = overlay(img, lab, alpha=0.5)
    assert rgb.dtype == np.uint8 and rgb.shape == (10, 10, 3)
    grey = round(100 / 255 * 255)
    np.testing.assert_array_equal(rgb[0, 0], [grey] * 3)  # background untouched
    np.testing.assert_array_equal(rgb[2, 2], PALETTE[0])  # boundary of label 1: opaque
    expected = np.round(0.5 * 100 / 255 * 255 + 0.5 * PALETTE[0].astype(float))
    np.testing.assert_array_equal(rgb[3, 3], expected)  # interior: blended
    np.testing.assert_array_equal(rgb[4, 4], PALETTE[1])  # label 2 boundary
    np.testing.assert_array_equal(rgb[1, 2], [255, 255, 255])  # background side: white
    plain = overlay(img, lab, alpha=0.0, boundaries=False)
    np.testing.assert_array_equal(plain, np.full((10, 10, 3), grey, np.uint8))
    before = img.copy()
    overlay(img, lab)
    np.testing.assert_array_equal(img, before)


def test_overlay_errors():
    from physeg.overlay import overlay

    with pytest.raises(ValueError, match="does not match labels shape"):
        overlay(np.zeros((5, 5)), np.zeros((5, 6), int))
    with pytest.raises(TypeError, match="integer"):
        overlay(np.zeros((5, 5)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((5, 5)), np.zeros((5, 5), int), alpha=2)


@pytest.mark.torch
def test_segment_with_a_network_model_takes_prediction_params(images, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from physeg.families.nets import _model

    seen = []
    original = _model.NetworkModel.predict

    def spy(self, image, **kwargs):
        seen.append({k: v for k, v in kwargs.items() if k in ("tta", "keep_largest")})
        return original(self, image, **kwargs)

    monkeypatch.setattr(_model.NetworkModel, "predict", spy)
    src, gt, truth = images
    (src / "c.png").unlink()  # grey only
    (gt / "c.png").unlink()
    model = tmp_path / "unet.pt"
    res = _invoke("fit", "--method", "unet", "--images", src, "--masks", gt, "-o", model,
                  "--param", "iterations=3", "--param", "widths=2,4", "--param", "threads=1")
    assert res.exit_code == 0, res.output
    mdl = physeg.load(model)
    for flags, kwargs in ((("--param", "keep_largest=true", "--param", "tta=false"),
                           {"keep_largest": True, "tta": False}),
                          (("--param", "tta=true"), {"tta": True})):
        out = tmp_path / ("out_" + "_".join(sorted(kwargs)) + str(len(flags)))
        seen.clear()
        res = _invoke("segment", src, "-o", out, "--model", model, *flags)
        assert res.exit_code == 0, res.output
        assert seen == [kwargs, kwargs]  # typed values ("false" -> False), one per image
        for name in ("a", "b"):
            expect = mdl.predict(pio.read_image(src / f"{name}.png"), **kwargs)
            np.testing.assert_array_equal(pio.read_mask(out / f"{name}.png"), expect)
    res = _invoke("segment", src, "-o", tmp_path / "bad", "--model", model,
                  "--param", "tta=maybe")
    assert res.exit_code == 2 and "tta" in res.output
    res = _invoke("segment", src, "-o", tmp_path / "bad2", "--model", model,
                  "--param", "keep_larges=1")
    assert res.exit_code == 2 and "keep_largest" in res.output


def test_rgb_file_read_as_a_volume_is_refused_with_the_flag_to_use(images, tmp_path):
    src, _, _ = images
    res = runner.invoke(app, ["segment", str(src / "c.png"), "-o", str(tmp_path / "o"),
                              "-m", "otsu", "--channel-axis", "none"])
    assert res.exit_code == 1
    assert "looks like a colour image (channels last)" in res.output
    assert "(on the command line: --channel-axis -1)" in res.output
    res = runner.invoke(app, ["segment", str(src / "c.png"), "-o", str(tmp_path / "o"),
                              "-m", "otsu"])
    assert res.exit_code == 0 and "segmented 1 of 1 file(s)" in res.output


def test_fit_shows_progress_and_ends_with_its_training_score(images, tmp_path):
    pytest.importorskip("cbx")
    src, gt, _ = images
    (src / "c.png").unlink()  # grey only: kinetic fits one channel count
    (gt / "c.png").unlink()
    res = runner.invoke(app, ["fit", "-m", "kinetic", "--images", str(src), "--masks", str(gt),
                              "-o", str(tmp_path / "k.json"), "-p", "max_iter=3",
                              "-p", "n_agents=4"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "fit kinetic" in res.stderr and "CBO iteration 3/3, best dice loss" in res.stderr
    assert "3/3" in res.stderr  # the bar's total is the iteration count, not "?"
    model = physeg.load(tmp_path / "k.json")
    line = [s for s in res.stdout.splitlines() if s.startswith("fit kinetic:")]
    assert line == [f"fit kinetic: dice loss {model.info['loss_value']:.3f}, Dice "
                    f"{line[0].split('Dice ')[1].split()[0]} on the 2 training images"]
    assert float(line[0].split("Dice ")[1].split()[0]) > 0.9  # clean shapes: a good fit
    assert "warning" not in res.stderr


def test_fit_warns_when_its_training_score_is_poor(images, tmp_path, monkeypatch):
    # a "fit" whose model labels everything background: Dice 0 on its own masks
    m = Method("test-nothing", lambda image, **kw: np.zeros(image.shape[:2], np.uint8), (),
               "test", fit_func=lambda imgs, masks, **kw: Model("test-nothing"))
    monkeypatch.setitem(physeg.families._registry._REGISTRY, "test-nothing", m)
    src, gt, _ = images
    res = runner.invoke(app, ["fit", "-m", "test-nothing", "--images", str(src), "--masks",
                              str(gt), "-o", str(tmp_path / "n.json")])
    assert res.exit_code == 0
    assert "fit test-nothing: Dice 0.00 on the 3 training images" in res.stdout
    assert "warning: the fitted model scores Dice 0.00 on the 3 training images" in res.stderr


def test_rerun_counts_done_files_apart_and_changed_parameters_fail_once(images, tmp_path):
    src, _, _ = images
    out = tmp_path / "out"
    assert _invoke("segment", src, "-o", out).exit_code == 0
    res = _invoke("segment", src, "-o", out)
    assert res.exit_code == 0
    assert f"segmented 0 of 3 file(s) with otsu -> {out} (3 already done)" in res.stdout
    res = runner.invoke(app, ["segment", str(src), "-o", str(out), "-p", "foreground=dark"])
    assert res.exit_code == 2
    lines = [s for s in res.output.splitlines() if s.strip()]
    assert len(lines) == 1, res.output  # one up-front error, no per-file failure
    assert lines[0].startswith(f"error: 3 of the 3 output(s) in {out} were written with other "
                               "settings")
    assert "this run: otsu {'foreground': 'dark'} seed 0" in lines[0]
    assert "Use --overwrite" in lines[0]
    res = _invoke("segment", src, "-o", out, "-p", "foreground=dark", "--overwrite")
    assert res.exit_code == 0 and "segmented 3 of 3 file(s)" in res.stdout


def test_methods_name_shows_one_method_with_every_parameter(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # rich's width: one table row per parameter
    res = runner.invoke(app, ["methods", "heat"])
    assert res.exit_code == 0
    heat = physeg.get_method("heat")
    assert res.output.startswith(f"heat — {heat.summary} [2D/3D, colour, fit]")
    for p in heat.params:
        row = [s for s in res.output.splitlines() if s.startswith(f"│ {p.name} ")]
        assert len(row) == 1, p.name
        assert p.type in row[0] and repr(p.default) in row[0] and p.describe() in row[0]
    for p in heat.fit_params:
        assert f"│ {p.name} (fit) " in res.output
    assert "otsu —" not in res.output and "kinetic —" not in res.output
    doc = json.loads(_invoke("methods", "kinetic", "--json").stdout)
    assert list(doc) == ["kinetic"]
    res = runner.invoke(app, ["methods", "kinetc"])
    assert res.exit_code == 2 and "Did you mean 'kinetic'?" in res.output


def test_method_summaries_speak_to_users(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    res = runner.invoke(app, ["methods"])
    for name, m in physeg.methods().items():
        assert f"{name} — {m.summary}" in res.output
        assert "seed 0" not in m.summary and "(seed" not in m.summary, name


def test_readme_command_table_lists_every_command_and_option():
    from pathlib import Path

    import click
    import typer.main

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        if line.startswith("| `physeg "):
            usage = line.split("`")[1]
            rows[usage.split()[1]] = usage
    group = typer.main.get_command(app)
    assert set(rows) == set(group.commands)  # every command, and no stale one
    for name, command in group.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert any(opt in rows[name] for opt in param.opts), (name, param.opts)


def test_fit_of_a_network_shows_its_iterations_and_training_score(images, tmp_path):
    pytest.importorskip("torch")
    src, gt, _ = images
    res = runner.invoke(app, ["fit", "-m", "unet", "--images", str(src), "--masks", str(gt),
                              "-o", str(tmp_path / "u.pt"), "-p", "iterations=4"])
    assert res.exit_code == 2  # two grey images and one colour: one line, in the user's terms
    assert "error: fitting failed: the training images mix colour and grey" in res.output
    (src / "c.png").unlink()
    (gt / "c.png").unlink()
    res = runner.invoke(app, ["fit", "-m", "unet", "--images", str(src), "--masks", str(gt),
                              "-o", str(tmp_path / "u.pt"), "-p", "iterations=4",
                              "-p", "widths=4,8", "-p", "val_every=2"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "fit unet" in res.stderr and "iteration 4/4, loss " in res.stderr
    assert "validation Dice" in res.stderr and " 4/4 " in res.stderr
    line = [s for s in res.stdout.splitlines() if s.startswith("fit unet: ")]
    assert len(line) == 1 and line[0].startswith("fit unet: training loss ")
    assert line[0].endswith("on the 2 training images")
    if float(line[0].split("Dice ")[1].split()[0]) < 0.5:  # 4 iterations: a poor score
        assert "warning: the fitted model scores Dice" in res.stderr


def test_ci_runs_the_test_command_the_readme_gives():
    # CI must run what a user is told to run: .ci/run's pytest line appears verbatim in README
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    ci_lines = [line.strip() for line in (root / ".ci" / "run").read_text().splitlines()
                if "python -m pytest" in line and not line.lstrip().startswith("#")]
    assert len(ci_lines) == 1
    assert ci_lines[0] in (root / "README.md").read_text()
