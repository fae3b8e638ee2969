"""kinetic's learned fit (issue 16): the forest's posterior as the particles' feature."""

from __future__ import annotations

import numpy as np
import pytest

import physeg
from physeg.data.synthetic import shape_image, three_level_image
from physeg.families.kinetic._learned import LearnedKineticModel

pytest.importorskip("sklearn")


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


def _pair(shape, seed):
    gen = np.random.default_rng(seed)
    img, mask = shape_image(shape, 64, channels=3, shape_value=(0.7, 0.4, 0.4),
                            background_value=(0.4, 0.5, 0.6))
    return np.clip(img + gen.normal(0, 0.1, img.shape), 0, 1), mask


def test_learned_posterior_feature_binary_and_roundtrip(tmp_path):
    img, mask = _pair("circle", 0)
    test, tmask = _pair("square", 1)
    model = physeg.fit("kinetic", [img], [mask], likelihood="learned", rng=0, trees=8)
    assert isinstance(model, LearnedKineticModel) and model.params["classes"] == 2
    labels = model.predict(test, channel_axis=-1)
    assert _dice(labels == 1, tmask) > 0.94  # trained on a circle: the corners round a little
    again = physeg.load(model.save(tmp_path / "k.json"))
    assert isinstance(again, LearnedKineticModel)
    assert again.predict(test, channel_axis=-1).tobytes() == labels.tobytes()


def test_learned_three_classes_wells_are_classes():
    img, truth = three_level_image(48, values=(0.2, 0.5, 0.8))
    gen = np.random.default_rng(2)
    train = img + gen.normal(0, 0.08, img.shape)
    test = img + gen.normal(0, 0.08, img.shape)
    model = physeg.fit("kinetic", [train], [truth], likelihood="learned", rng=0, trees=8)
    labels = model.predict(test)
    assert model.params["classes"] == 3 and np.mean(labels == truth) > 0.95


def test_learned_and_cbo_settings_do_not_mix():
    img, mask = _pair("circle", 0)
    with pytest.raises(ValueError, match="CBO settings"):
        physeg.fit("kinetic", [img], [mask], likelihood="learned", n_agents=4)
    with pytest.raises(ValueError, match="likelihood='learned'"):
        physeg.fit("kinetic", [img], [mask], trees=4)
