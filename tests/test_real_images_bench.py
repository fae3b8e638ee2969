"""``benchmarks/real_images.py`` on a tiny fake dataset folder: records, Markdown, resuming.

The images are a dark disc (the object) on a bright background, so that every "bright = 1"
method (physeg ``otsu``, scikit-image ``threshold_otsu``) labels the background 1: plain Dice
about 0, oracle (best-polarity) Dice about 1 -- the case the two columns exist for.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_script(monkeypatch):
    # the script sets the BLAS/OpenMP thread variables at import: restored after the test
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    spec = importlib.util.spec_from_file_location(
        "real_images_bench", REPO / "benchmarks" / "real_images.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_dataset(root: Path, name: str = "weizmann_horse", n: int = 3) -> Path:
    from PIL import Image

    folder = root / name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for k in range(n):
        yy, xx = np.mgrid[:48, :56]
        obj = (yy - 22 - k) ** 2 + (xx - 26 - 2 * k) ** 2 < (12 + k) ** 2
        rng = np.random.default_rng(k)
        img = np.where(obj[..., None], [40, 50, 60], [210, 200, 190]).astype(float)
        img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / "images" / f"im{k}.png")
        Image.fromarray(obj.astype(np.uint8)).save(folder / "masks" / f"im{k}.png")
        rows.append({"id": f"im{k}", "image": f"images/im{k}.png", "masks": f"masks/im{k}.png"})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "image", "masks"])
        w.writeheader()
        w.writerows(rows)
    return root


def _run(mod, tmp_path: Path, methods: str, extra: tuple[str, ...] = ()) -> dict:
    argv = ["--data", str(tmp_path / "data"), "--datasets", "horse", "--methods", methods,
            "--limit", "2", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
            "--html-dir", str(tmp_path / "html"), "--no-figure", *extra]
    assert mod.main(argv) == 0
    return json.loads((tmp_path / "out" / "real_images.json").read_text())


def test_plain_and_oracle_dice_on_dark_object(tmp_path, monkeypatch):
    mod = _load_script(monkeypatch)
    _fake_dataset(tmp_path / "data")
    res = _run(mod, tmp_path, "otsu,skimage-otsu")
    recs = res["records"]
    assert {(r["row"], r["id"]) for r in recs} == {
        (m, i) for m in ("otsu", "skimage-otsu") for i in ("im0", "im1")}
    for r in recs:
        assert r["error"] is None
        assert r["dice_oracle"] > 0.95 and r["iou_oracle"] > 0.9
        assert r["cpu_s"] >= 0 and r["wall_s"] >= 0
        if r["row"] == "skimage-otsu":  # bright = 1 always: label 1 = the background
            assert r["dice"] < 0.05 and r["oracle_flipped"]
        else:  # physeg otsu: bright = 1, or the dark object if it learns a foreground prior
            assert (r["dice"] < 0.05 and r["oracle_flipped"]) or \
                (r["dice"] == r["dice_oracle"] and not r["oracle_flipped"])
    summ = {e["row"]: e for e in res["summary"]}
    assert summ["otsu"]["n"] == 2 and not summ["otsu"]["anchor"]
    assert summ["skimage-otsu"]["anchor"]
    sk = summ["skimage-otsu"]
    assert sk["dice_mean"] < 0.05 < 0.95 < sk["dice_oracle_mean"] and sk["oracle_flipped"] == 2
    assert res["environment"]["threads"] == 1
    assert res["command"].startswith("python benchmarks/real_images.py --data ")
    md = (tmp_path / "out" / "real_images.md").read_text()
    assert md.splitlines()[2].startswith("Regenerate: `python benchmarks/real_images.py")
    assert "plain Dice" in md and "oracle Dice" in md
    for row, label in (("otsu", "| otsu |"), ("skimage-otsu", "| skimage-otsu (anchor) |")):
        line = next(ln for ln in md.splitlines() if ln.startswith(label))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[3].strip("*")) == pytest.approx(summ[row]["dice_mean"], abs=1e-3)
        assert float(cells[6]) == pytest.approx(summ[row]["dice_oracle_mean"], abs=1e-3)
    assert "plain Dice ≥ 0.82" in md  # the targets table (horse target)
    html = (tmp_path / "html" / "index.html").read_text()
    assert "Galleries (worst first)" in html and "<img" in html


def test_resume_reuses_cached_records(tmp_path, monkeypatch):
    mod = _load_script(monkeypatch)
    _fake_dataset(tmp_path / "data")
    first = _run(mod, tmp_path, "skimage-otsu")
    lines = (tmp_path / "cache" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 2 and first["n_computed"] == 2
    again = _run(mod, tmp_path, "skimage-otsu")
    assert again["n_computed"] == 0 and again["n_cached"] == 2
    assert len((tmp_path / "cache" / "records.jsonl").read_text().splitlines()) == 2
    assert [r["dice"] for r in again["records"]] == [r["dice"] for r in first["records"]]
    fresh = _run(mod, tmp_path, "skimage-otsu", ("--fresh",))
    assert fresh["n_computed"] == 2


def test_grabcut_ratio(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    mod = _load_script(monkeypatch)
    _fake_dataset(tmp_path / "data")
    res = _run(mod, tmp_path, "skimage-otsu,grabcut")
    gc = [r for r in res["records"] if r["row"] == "grabcut"]
    assert len(gc) == 2 and all(r["error"] is None for r in gc)
    assert all(r["dice"] > 0.8 for r in gc)  # a centred object inside the 5 % margin rectangle
    summ = {e["row"]: e for e in res["summary"]}
    assert summ["grabcut"]["cpu_s_ratio_grabcut"] == pytest.approx(1.0)
    assert summ["skimage-otsu"]["n_same_grabcut"] == 2
