"""The kinetic method through the command line: segment, fit, segment --model."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("typer")

from typer.testing import CliRunner  # noqa: E402

from physeg import io as pio  # noqa: E402
from physeg.cli import app  # noqa: E402

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def data(tmp_path):
    from physeg.data.noise import noisy_shape

    src, gt = tmp_path / "in", tmp_path / "gt"
    truth = {}
    for i, shape in enumerate(("square", "circle")):
        img, m = noisy_shape(shape, 40, "gaussian", 1, rng=i)
        pio.write_image(src / f"{shape}.png", np.round(img * 255).astype(np.uint8))
        pio.write_labels(gt / f"{shape}.png", m)
        truth[shape] = m
    return src, gt, truth


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_cli_segment_fit_and_segment_with_model(tmp_path, data):
    src, gt, truth = data
    out = tmp_path / "out"
    res = _invoke("segment", src, "-o", out, "--method", "kinetic", "-p", "t_final=3")
    assert res.exit_code == 0, res.output
    for name, m in truth.items():
        assert _dice(pio.read_mask(out / f"{name}.png"), m) > 0.95
    model = tmp_path / "k.json"
    res = _invoke("fit", "--method", "kinetic", "--images", src, "--masks", gt, "-o", model,
                  "-p", "n_agents=3", "-p", "max_iter=1", "-p", "fit_size=24", "-p", "rng=0",
                  "-p", "loss=l2")
    assert res.exit_code == 0, res.output
    doc = json.loads(model.read_text())
    assert doc["method"] == "kinetic" and "barriers" in doc["params"]
    out2 = tmp_path / "out2"
    res = _invoke("segment", src, "-o", out2, "--model", model)
    assert res.exit_code == 0, res.output
    assert (out2 / "square.png").exists() and (out2 / "circle.png").exists()
