"""Model files are data, never code: ``physeg.load`` on hostile and broken files (issue 14).

A ``.pt`` checkpoint is read with ``torch.load(weights_only=True)``; anything that is not a
model physeg wrote raises one ``ValueError`` "not a physeg model file: <path> (<reason>)",
which the CLI prints as one line with exit status 2.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import physeg

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "msnet_wbc_s30.pt"

torch_only = pytest.mark.torch


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: the marker exists only if code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _assert_not_a_model(path: Path) -> str:
    with pytest.raises(ValueError) as info:
        physeg.load(path)
    msg = str(info.value)
    assert msg.startswith(f"not a physeg model file: {path} (") and msg.endswith(")")
    # one line, and bounded apart from the path (whose length is the temporary folder's:
    # /tmp/pytest-of-USER/pytest-NNN grows with every run on a machine)
    assert "\n" not in msg and len(msg) - len(str(path)) < 400
    return msg


@torch_only
@pytest.mark.parametrize("how", ["torch.save dict", "legacy torch.save", "bare pickle"])
def test_malicious_pickle_never_runs(tmp_path, how):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    evil = {"physeg_model": 1, "method": "msnet", "info": {"x": _WritesMarker(marker)}}
    if how == "torch.save dict":
        torch.save(evil, path)
    elif how == "legacy torch.save":
        torch.save(evil, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(_WritesMarker(marker)))
    assert not marker.exists()
    with pytest.raises(Exception) as info:
        physeg.load(path)
    assert not marker.exists(), "loading a model file ran code from it"
    assert info.type is ValueError
    assert str(info.value).startswith(f"not a physeg model file: {path} (")
    if how == "torch.save dict":
        assert "never runs code" in str(info.value)


def _tensor_checkpoint(torch, path: Path) -> None:
    torch.save({"physeg_model": 1, "method": "msnet", "state_dict": {"w": torch.ones(64, 64)}},
               path)


@torch_only
@pytest.mark.parametrize("case, reason", [
    ("empty", "empty"),
    ("random bytes", "not a torch checkpoint"),
    ("truncated", "truncated"),
    ("json renamed", "it is JSON"),
    ("a list", "holds a list"),
    ("no method", "no 'method'"),
    ("unknown method", "Unknown method 'nope'"),
    ("newer format", "format 99"),
    ("info not a dict", "'info' entry is not a dict"),
    ("missing arch", "missing 'arch'"),
    ("bad config", "does not build a 'msnet' network"),
    ("weights do not fit", "weights do not fit"),
])
def test_broken_checkpoint_is_one_clear_error(tmp_path, case, reason):
    torch = pytest.importorskip("torch")
    from physeg.families.nets._arch import build_network

    path = tmp_path / "model.pt"
    net_config = {"in_channels": 1, "num_classes": 2, "ndim": 2, "widths": (4, 8)}
    net = {"physeg_model": 1, "method": "msnet", "arch": "msnet", "config": net_config,
           "state_dict": build_network("msnet", **net_config).state_dict(),
           "preprocessing": {"ndim": 2, "in_channels": 1, "classes": [0, 1], "mean": [0.5],
                             "std": [0.2]}}
    if case == "empty":
        path.write_bytes(b"")
    elif case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "truncated":
        _tensor_checkpoint(torch, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "json renamed":
        path.write_text(json.dumps(physeg.Model("otsu").to_dict()))
    elif case == "a list":
        torch.save([1, 2, 3], path)
    elif case == "no method":
        torch.save({"state_dict": {}}, path)
    elif case == "unknown method":
        torch.save({"method": "nope"}, path)
    elif case == "newer format":
        torch.save({**net, "physeg_model": 99}, path)
    elif case == "info not a dict":
        torch.save({**net, "info": [1]}, path)
    elif case == "missing arch":
        torch.save({k: v for k, v in net.items() if k != "arch"}, path)
    elif case == "bad config":
        torch.save({**net, "config": {**net_config, "bogus": 1}}, path)
    else:
        torch.save({**net, "config": {**net_config, "widths": (4, 16)}}, path)
    assert reason in _assert_not_a_model(path)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ('{"physeg_model": 1, "method": ', "malformed JSON"),
    ("[1, 2]", "holds a list"),
    ('{"method": "otsu"}', "no 'physeg_model'"),
    ('{"physeg_model": 1, "method": "otsu", "params": [1]}', "'params' entry is not a dict"),
    ('{"physeg_model": 1, "method": 3}', "no 'method'"),
])
def test_broken_json_model_is_one_clear_error(tmp_path, text, reason):
    path = tmp_path / "model.json"
    path.write_text(text)
    assert reason in _assert_not_a_model(path)


def test_binary_file_named_json_is_one_clear_error(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    assert "not a JSON text file" in _assert_not_a_model(path)


@torch_only
def test_cli_turns_a_bad_model_into_one_line_exit_2(tmp_path):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from physeg.cli import app
    from physeg.io import write_image

    image = tmp_path / "x.png"
    write_image(image, (np.arange(400).reshape(20, 20) % 256).astype(np.uint8))
    for name, data in (("empty.pt", b""), ("random.pt", os.urandom(256))):
        (tmp_path / name).write_bytes(data)
        result = CliRunner().invoke(app, ["segment", str(image), "-o", str(tmp_path / "out"),
                                          "--model", str(tmp_path / name)])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "not a physeg model file" in lines[0], result.output


@torch_only
def test_new_checkpoints_hold_only_plain_data(tmp_path):
    """numpy values in params / info are saved as plain Python, so weights_only loads them;
    an object that is not plain data is refused at save time, naming its entry."""
    torch = pytest.importorskip("torch")
    from physeg.families.nets._arch import build_network
    from physeg.families.nets._model import NetworkModel, Preprocessing

    config = {"in_channels": 1, "num_classes": 2, "ndim": 2, "widths": (4, 8)}
    pre = Preprocessing(2, 1, [0, 255], [0.5], [0.2])
    model = NetworkModel("msnet", "msnet", config, build_network("msnet", **config), pre,
                         params={"lr": np.float32(0.5)},
                         info={"history": {"loss": [np.float64(0.25)]},
                               "curve": np.arange(3), "seed": np.int64(7)})
    path = model.save(tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    assert data["info"] == {"history": {"loss": [0.25]}, "curve": [0, 1, 2], "seed": 7}
    assert type(data["train"]["lr"]) is float and data["config"]["widths"] == (4, 8)
    again = physeg.load(path)
    image = np.random.default_rng(0).random((16, 16))
    np.testing.assert_array_equal(again.predict(image), model.predict(image))
    model.info["callback"] = print
    with pytest.raises(TypeError, match="info/callback"):
        model.save(tmp_path / "m2.pt")


@torch_only
def test_shipped_checkpoint_loads_as_plain_data_with_the_same_predictions():
    torch = pytest.importorskip("torch")
    from physeg.families.nets._model import load_network

    model = physeg.load(SHIPPED)
    # our own file, so the unrestricted load is safe here: the reference it must equal
    reference = load_network(torch.load(SHIPPED, map_location="cpu", weights_only=False))
    image = (np.random.default_rng(1).random((48, 48, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(model.predict(image), reference.predict(image))
    for key, value in reference.net.state_dict().items():
        assert torch.equal(value, model.net.state_dict()[key])
