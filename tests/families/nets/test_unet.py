"""U-Net baseline: 2D/3D shapes, padding, parameter counts, training through the shared harness."""

from __future__ import annotations

import numpy as np
import pytest

import physeg

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared CPU
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "ndim,shape,strides",
    [(2, (16, 16), None), (2, (11, 14), None), (3, (6, 12, 12), [(1, 2, 2), 2]),
     (3, (8, 8, 8), None)],
)
def test_unet_shape_round_trip(ndim, shape, strides):
    from physeg.families.nets.unet import build_unet

    torch.manual_seed(0)
    net = build_unet(1, 3, ndim=ndim, widths=(4, 8, 16), strides=strides)
    x = torch.randn((2, 1) + shape, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 3) + shape
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()


def test_unet_parameter_count_by_hand():
    from physeg.families.nets._arch import count_parameters
    from physeg.families.nets.unet import build_unet

    net = build_unet(1, 2, widths=(2, 4))
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    expect = (conv(1, 2, 3) + conv(2, 2, 3)  # enc 1
              + conv(2, 4, 3) + conv(4, 4, 3)  # enc 2
              + (4 * 2 * 2 * 2 + 2)  # transposed conv 2x2
              + conv(4, 2, 3) + conv(2, 2, 3)  # dec 1
              + conv(2, 2, 1))  # out
    assert count_parameters(net) == expect


def test_unet_fit_save_load(tmp_path):
    gen = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(4):
        m = np.zeros((12, 12), np.uint8)
        r, c = gen.integers(1, 6, 2)
        m[r:r + 5, c:c + 5] = 1
        images.append((m * 200 + gen.integers(0, 40, m.shape)).astype(np.uint8))
        masks.append(m)
    model = physeg.fit("unet", images, masks, widths="4,8", iterations=4, batch_size=2,
                       threads=1, rng=0)
    assert model.info["parameters"] > 0 and model.info["n_train"] == 3
    path = model.save(tmp_path / "u.pt")
    again = physeg.load(path)
    assert again.method == "unet"
    np.testing.assert_array_equal(again.predict(images[0]), model.predict(images[0]))
