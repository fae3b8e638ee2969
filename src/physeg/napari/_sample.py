"""Sample data for the napari plugin: physeg's synthetic test images with their exact truth.

Each function returns napari layer data tuples ``[(data, kwargs, layer_type), ...]``: the noisy
image and its exact mask (as a Labels layer, hidden, to compare against), so the plugin can be
tried without a file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["noisy_triangle", "colour_circle", "ellipsoids"]

LayerData = list[tuple[Any, dict[str, Any], str]]


def noisy_triangle() -> LayerData:
    """The demo's image: a triangle with Gaussian noise of level 3 (s = 0.3), 128 x 128."""
    from ..data.noise import noisy_shape

    image, mask = noisy_shape("triangle", 128, "gaussian", 3, rng=0)
    return [(image, {"name": "noisy triangle"}, "image"),
            (mask, {"name": "noisy triangle truth", "visible": False}, "labels")]


def colour_circle() -> LayerData:
    """An orange circle on blue with Gaussian noise per channel, 128 x 128 RGB."""
    from ..data.noise import noisy_shape

    image, mask = noisy_shape("circle", 128, "gaussian", 2, rng=0, channels=3,
                              shape_value=(0.9, 0.55, 0.1), background_value=(0.15, 0.3, 0.7))
    return [(image, {"name": "noisy colour circle", "rgb": True}, "image"),
            (mask, {"name": "noisy colour circle truth", "visible": False}, "labels")]


def ellipsoids() -> LayerData:
    """Three ellipsoids in a (32, 64, 64) volume with Gaussian noise (s = 0.2)."""
    from ..data.synthetic import ellipsoids_volume

    volume, labels = ellipsoids_volume((32, 64, 64), n=3, rng=0, foreground=0.7,
                                       background=0.3)
    noisy = volume + np.random.default_rng(0).normal(0.0, 0.2, volume.shape).astype(np.float32)
    return [(noisy, {"name": "noisy ellipsoids"}, "image"),
            ((labels > 0).astype(np.uint8), {"name": "noisy ellipsoids truth",
                                             "visible": False}, "labels")]
