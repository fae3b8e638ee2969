"""physeg.families.heat.blockwise: blockwise heat equals the in-memory run on images that fit.

The equivalence tested (see the module docstring): with the normalisation and the region
means fixed, the blockwise threshold dynamics (dask map_overlap, halo ceil(6 sqrt(2 tau)))
gives exactly the labels of the same dynamics on the whole in-memory image
(:func:`physeg.families.heat.blockwise.heat_fixed_means`); and it agrees with the full ``heat``
method (means re-estimated every step) up to a few boundary pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("zarr")

from physeg.api import segment  # noqa: E402
from physeg.families.heat import blockwise  # noqa: E402


def _discs(shape=(150, 130), seed=1, sigma=0.25):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = ((yy - 60) ** 2 + (xx - 50) ** 2 < 30**2) | ((yy - 115) ** 2 + (xx - 100) ** 2 < 18**2)
    img = (0.25 + 0.5 * mask + rng.normal(0, sigma, mask.shape)).astype(np.float32)
    return img, mask


def test_blockwise_equals_in_memory_fixed_means():
    chunks = (75, 58)
    img, mask = _discs((150, 230))  # the right-hand blocks hold no object
    lab, info = blockwise.segment_blockwise(img, chunks=chunks, return_info=True)
    assert info["blocks"] >= 6 and info["stop"] == "converged"
    assert info["iterations"] >= 2  # the dynamics really moved pixels across blocks
    ref, rinfo = blockwise.heat_fixed_means(img, info["means"], center=info["center"],
                                            scale=info["scale"], return_info=True)
    assert lab.dtype == np.uint8 and lab.shape == img.shape
    np.testing.assert_array_equal(lab, ref)
    assert rinfo["changed"] == info["changed"]
    # late passes recompute only the blocks next to moving fronts
    assert min(info["blocks_recomputed"]) < info["blocks"]
    # and the fixed-means result is the full heat method's, up to a few boundary pixels
    full = segment(img, method="heat")
    assert np.count_nonzero(full != lab) <= 0.002 * lab.size
    assert np.count_nonzero(lab != mask) <= 0.01 * lab.size


def test_multiphase_and_given_means():
    rng = np.random.default_rng(3)
    img = np.full((70, 80), 0.1, np.float32)
    img[8:40, 8:50] = 0.5
    img[45:66, 30:76] = 0.9
    truth = np.zeros(img.shape, np.uint8)
    truth[8:40, 8:50] = 1
    truth[45:66, 30:76] = 2
    noisy = img + rng.normal(0, 0.1, img.shape).astype(np.float32)
    means = [0.9, 0.1, 0.5]  # any order: labels follow brightness
    lab = blockwise.segment_blockwise(noisy, classes=3, means=means, chunks=40, tau=1.0,
                                      lam=2.0)
    ref = blockwise.heat_fixed_means(noisy, means, tau=1.0, lam=2.0)
    np.testing.assert_array_equal(lab, ref)
    assert np.count_nonzero(lab != truth) <= 0.01 * lab.size


def test_colour_image():
    img, mask = _discs((80, 90), sigma=0.15)
    rgb = np.stack([img, 1.0 - img, 0.5 * img], axis=-1)
    lab, info = blockwise.segment_blockwise(rgb, channel_axis=-1, chunks=45, return_info=True)
    ref = blockwise.heat_fixed_means(rgb, info["means"], channel_axis=-1,
                                     center=info["center"], scale=info["scale"])
    np.testing.assert_array_equal(lab, ref)
    assert np.count_nonzero(lab != mask) <= 0.01 * lab.size


def test_volume():
    rng = np.random.default_rng(5)
    zz, yy, xx = np.mgrid[:20, :32, :30]
    mask = (zz - 10) ** 2 + (yy - 16) ** 2 + (xx - 14) ** 2 < 8**2
    vol = (0.2 + 0.6 * mask + rng.normal(0, 0.2, mask.shape)).astype(np.float32)
    lab, info = blockwise.segment_blockwise(vol, chunks=16, tau=1.0, return_info=True)
    ref = blockwise.heat_fixed_means(vol, info["means"], tau=1.0, center=info["center"],
                                     scale=info["scale"])
    np.testing.assert_array_equal(lab, ref)
    assert np.count_nonzero(lab != mask) <= 0.01 * lab.size


def test_tiff_and_zarr_inputs_and_outputs(tmp_path):
    import tifffile
    import zarr

    img, _ = _discs((80, 70))
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", u8, tile=(32, 32), photometric="minisblack",
                     metadata=None)
    z = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=u8.shape, chunks=(50, 50),
                  dtype=u8.dtype)
    z[:] = u8
    ref = blockwise.segment_blockwise(u8, chunks=40)
    out_t = blockwise.segment_blockwise(tmp_path / "in.tif", tmp_path / "out.zarr", chunks=40)
    np.testing.assert_array_equal(np.asarray(zarr.open(str(out_t), mode="r")[:]), ref)
    out_z = blockwise.segment_blockwise(tmp_path / "in.zarr", tmp_path / "out.tif", chunks=40)
    np.testing.assert_array_equal(tifffile.imread(out_z), ref)
    with tifffile.TiffFile(out_z) as tf:
        assert tf.pages[0].is_tiled
    with pytest.raises(FileExistsError, match="overwrite=True"):
        blockwise.segment_blockwise(tmp_path / "in.zarr", tmp_path / "out.tif", chunks=40)
    assert not list(tmp_path.glob("physeg-blockwise-*"))


def test_errors():
    img, _ = _discs((40, 40))
    with pytest.raises(ValueError, match="blockwise method.*'heat'"):
        blockwise.segment_blockwise(img, method="otsu")
    with pytest.raises(ValueError, match=r"shape \(K,\) for grey"):
        blockwise.segment_blockwise(img, means=[[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="got 3 means but classes=2"):
        blockwise.segment_blockwise(img, means=[0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="constant"):
        blockwise.segment_blockwise(np.ones((40, 40), np.float32), means=[0, 1])
    with pytest.raises(ValueError, match="out must end in .zarr or .tif"):
        blockwise.segment_blockwise(img, "labels.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        blockwise.segment_blockwise("/nonexistent/image.zarr")
    with pytest.raises(ValueError, match="2D or 3D image"):
        blockwise.open_array(np.zeros(10))
    with pytest.raises(ValueError, match="out of range"):
        blockwise.segment_blockwise(img, tau=-1.0)


def test_halo_and_merge():
    assert blockwise.heat_halo(2.0) == 12  # ceil(6 * sqrt(4))
    assert blockwise.heat_halo(8.0) == 24
    assert blockwise._merge_small_chunks(((64, 64, 4), (10,), (1,)), 2, 12) == (
        (64, 68), (10,), (1,))
    assert blockwise.peak_rss_mb() > 10
