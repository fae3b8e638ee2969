"""The read-out window (physeg.families.kinetic._multiwell.window_majority, ``readout``).

Each pixel's label is the majority of the particles' wells in the window around it: checked
against a direct count, for the cases it must keep (large regions, ties) and remove
(isolated flips), and on a noisy image with an exact mask, where it must lower the error;
model files written before the window existed keep each particle's own well.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import physeg
from physeg.families.kinetic._multiwell import window_majority


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


@pytest.mark.parametrize("classes", [2, 3, 4])
def test_majority_equals_a_direct_count(classes):
    """Every pixel gets the label most frequent in its reflected 5 x 5 window; on a tie
    (K > 2) its own label if that is among the most frequent, else the smallest of them."""
    lab = np.random.default_rng(classes).integers(0, classes, (13, 17)).astype(np.uint8)
    got = window_majority(lab, classes, 5)
    padded = np.pad(lab, 2, mode="symmetric")  # scipy's "reflect" repeats the edge pixel
    for i in range(lab.shape[0]):
        for j in range(lab.shape[1]):
            counts = np.bincount(padded[i:i + 5, j:j + 5].ravel(), minlength=classes)
            best = np.flatnonzero(counts == counts.max())
            want = lab[i, j] if lab[i, j] in best else best[0]
            assert got[i, j] == want, (i, j, counts)


def test_isolated_flips_go_and_regions_stay():
    """Stray pixels and a one-pixel hole go; the square stays but for its four corner pixels
    (4 of 9 votes: the window rounds corners by one pixel)."""
    truth = np.zeros((40, 40), np.uint8)
    truth[8:30, 10:32] = 1
    noisy = truth.copy()
    noisy[[2, 15, 35], [3, 20, 30]] ^= 1  # one stray pixel outside, a hole inside, one more
    want = truth.copy()
    want[[8, 8, 29, 29], [10, 31, 10, 31]] = 0
    np.testing.assert_array_equal(window_majority(noisy, 2, 3), want)
    np.testing.assert_array_equal(window_majority(noisy, 2, 1), noisy)  # 1 = the paper's


@pytest.mark.parametrize("width, kept", [(1, False), (2, False), (3, True)])
def test_lines_up_to_half_the_window_wide_vanish(width, kept):
    """The documented cost: a 5 x 5 window keeps a line of 3 px and loses one of 1-2 px."""
    lab = np.zeros((30, 30), np.uint8)
    lab[:, 10:10 + width] = 1
    assert window_majority(lab, 2, 5).any() == kept


def test_default_readout_lowers_the_error_on_a_noisy_disc():
    """A disc in Gaussian noise (sigma 0.3 on contrast 0.5, exact mask): the default window
    removes most of the per-particle read-out's stray pixels (measured 0.970 -> 0.985)."""
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 45) ** 2 + (xx - 50) ** 2 < 28 ** 2
    img = 0.25 + 0.5 * disc + np.random.default_rng(5).normal(0, 0.3, disc.shape)
    own = physeg.segment(img, "kinetic", rng=0, readout=1) == 1
    window = physeg.segment(img, "kinetic", rng=0) == 1
    assert _dice(window, disc) > _dice(own, disc) + 0.005
    assert _dice(window, disc) > 0.98


def test_even_window_is_refused_by_the_schema(tmp_path):
    """An even window has no centre pixel: refused before anything runs, in the API and the
    CLI (one line naming the flag's parameter)."""
    import imageio.v3 as iio
    from typer.testing import CliRunner

    from physeg.cli import app

    with pytest.raises(ValueError, match="'readout' must be odd.*use 3 or 5"):
        physeg.segment(np.random.default_rng(0).random((24, 24)), "kinetic", readout=4)
    iio.imwrite(tmp_path / "a.png", np.zeros((16, 16), np.uint8))
    res = CliRunner().invoke(app, ["segment", str(tmp_path / "a.png"), "-o",
                                   str(tmp_path / "out"), "--method", "kinetic", "--param",
                                   "readout=4"])
    assert res.exit_code == 2 and "'readout' must be odd" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()


def test_a_model_file_without_the_window_keeps_its_labels(tmp_path):
    """Files saved before ``readout`` existed were fitted and used with each particle's own
    well: they load with readout 1, and predict the labels of readout=1."""
    gen = np.random.default_rng(1)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 10:26] = 1
    img = 0.3 + 0.4 * mask + gen.normal(0, 0.2, mask.shape)
    model = physeg.fit("kinetic", [img], [mask], loss="l2", n_agents=4, max_iter=2,
                       fit_size=24, rng=0, t_final=1.0)
    assert model.params["readout"] == 5
    path = model.save(tmp_path / "k.json")
    doc = json.loads(path.read_text())
    del doc["params"]["readout"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    loaded = physeg.load(old)
    assert loaded.params["readout"] == 1
    np.testing.assert_array_equal(loaded.predict(img, rng=2),
                                  model.predict(img, rng=2, readout=1))


def test_a_learned_model_file_without_the_window_reads_out_each_particle(tmp_path):
    """The same for a learned-likelihood kinetic model: one loader default serves both."""
    pytest.importorskip("sklearn")
    gen = np.random.default_rng(3)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 10:26] = 1
    img = 0.3 + 0.4 * mask + gen.normal(0, 0.2, mask.shape)
    model = physeg.fit("kinetic", [img], [mask], likelihood="learned", rng=0, trees=4)
    doc = json.loads(model.save(tmp_path / "k.json").read_text())
    del doc["params"]["readout"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    loaded = physeg.load(tmp_path / "old.json")
    assert loaded.params["readout"] == 1
    np.testing.assert_array_equal(loaded.predict(img), model.predict(img, readout=1))
