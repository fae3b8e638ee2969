"""physeg.batch: executors give identical labels, resume after a crash, bad files are logged."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from physeg import batch
from physeg import io as pio
from physeg.data.synthetic import shape_image
from physeg.overlay import LEGEND_ROW

SHAPES = ("square", "circle", "triangle", "rhombus", "ellipse")


def _make_inputs(folder: Path, n: int = 6) -> dict[str, np.ndarray]:
    """Write ``n`` uint8 PNGs of the synthetic shapes (some RGB) and return their exact masks."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        channels = 3 if i % 2 else None
        img, mask = shape_image(shape, (40 + 4 * i, 48), channels=channels,
                                shape_value=0.8, background_value=0.2)
        name = f"img{i:02d}_{shape}"
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / f"{name}.png")
        truth[name] = mask
    return truth


def _labels(outdir: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted(outdir.glob("*.png"))}


def test_serial_gives_exact_masks_and_a_log(tmp_path):
    truth = _make_inputs(tmp_path / "in")
    res = batch.segment_many(tmp_path / "in", tmp_path / "out", method="otsu")
    assert res.ok and res.count("done") == len(truth)
    got = _labels(tmp_path / "out")
    assert set(got) == set(truth)
    for name, mask in truth.items():
        np.testing.assert_array_equal(got[name], mask.astype(np.uint8))
    log = batch.read_log(tmp_path / "out" / batch.LOG_NAME)
    assert [r["event"] for r in log] == ["run"] + ["file"] * len(truth) + ["summary"]
    rec = log[1]
    assert rec["status"] == "done" and rec["method"] == "otsu"
    assert rec["params"] == {} and rec["error"] is None
    assert set(rec["seconds"]) == {"read", "segment", "write", "total"}
    assert len(rec["input_sha256"]) == 64
    assert log[0]["versions"]["numpy"] == np.__version__
    assert log[-1]["done"] == len(truth) and log[-1]["failed"] == 0


def _dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    return distributed.Client(cluster), cluster


def test_executor_equivalence(tmp_path):
    """Serial, a process pool and a local dask cluster write identical labels and records."""
    _make_inputs(tmp_path / "in", n=4)
    params = {"foreground": "dark"}
    serial = batch.segment_many(tmp_path / "in", tmp_path / "serial", method="otsu",
                                params=params, rng=7)
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        pooled = batch.segment_many(tmp_path / "in", tmp_path / "pool", method="otsu",
                                    params=params, rng=7, executor=pool)
    client, cluster = _dask_client()
    try:
        dasked = batch.segment_many(tmp_path / "in", tmp_path / "dask", method="otsu",
                                    params=params, rng=7, executor=client)
    finally:
        client.close()
        cluster.close()
    assert serial.ok and pooled.ok and dasked.ok
    ref = _labels(tmp_path / "serial")
    assert len(ref) == 4 and all(v[0, 0] == 1 for v in ref.values())
    for other in ("pool", "dask"):
        got = _labels(tmp_path / other)
        assert set(got) == set(ref)
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k])
    workers = {r["worker"] for r in pooled.records}
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)  # really in other processes
    for a, b in zip(serial.records, dasked.records, strict=True):
        assert (a["input"], a["seed"], a["input_sha256"]) == (b["input"], b["seed"],
                                                             b["input_sha256"])


def test_seed_is_passed_as_is():
    assert batch._seed(3) == 3 and batch._seed(None) is None
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert batch._seed(g1) == batch._seed(g2)
    with pytest.raises(TypeError, match="non-negative int seed"):
        batch._seed(-1)


def test_resume_after_simulated_crash(tmp_path):
    """Kill the run after 3 files (and leave a torn temp file): the re-run loses nothing."""
    truth = _make_inputs(tmp_path / "in", n=7)
    out = tmp_path / "out"
    seen = []

    def crash_after_three(rec):
        seen.append(rec)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch.segment_many(tmp_path / "in", out, method="otsu", progress=crash_after_three)
    # a torn temporary file of a writer that was killed (a process that no longer runs)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    torn = f".img03_rhombus.png.{pio._write._host_tag()}-{dead.pid}-{'a' * 12}{pio.TEMP_SUFFIX}"
    (out / torn).write_bytes(b"\x89PNG torn")
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert len(first) == 3
    log = batch.read_log(out / batch.LOG_NAME)
    assert log[-1]["event"] == "summary" and log[-1]["interrupted"] is True
    assert log[-1]["not_finished"] == 4

    res = batch.segment_many(tmp_path / "in", out, method="otsu")
    assert res.ok
    assert res.count("skipped") == 3 and res.count("done") == 4
    assert not list(out.glob(".*physeg-tmp"))
    for name, mtime in first.items():  # the finished files were not recomputed
        assert (out / name).stat().st_mtime_ns == mtime
    got = _labels(out)
    for name, mask in truth.items():
        np.testing.assert_array_equal(got[name], mask.astype(np.uint8))
    # A third run does nothing; other parameters are not mistaken for done work.
    again = batch.segment_many(tmp_path / "in", out, method="otsu")
    assert again.count("skipped") == 7
    # other parameters: one error before any work, not one failed record per file
    with pytest.raises(FileExistsError, match=r"7 of the 7 output\(s\) in .* were written "
                       r"with other settings .*foreground.*--overwrite"):
        batch.segment_many(tmp_path / "in", out, method="otsu", params={"foreground": "dark"})
    assert batch.read_log(out / batch.LOG_NAME)[-1]["event"] == "summary"  # nothing logged
    redo = batch.segment_many(tmp_path / "in", out, method="otsu", params={"foreground": "dark"},
                              overwrite=True)
    assert redo.count("done") == 7
    np.testing.assert_array_equal(_labels(out)["img00_square"], ~truth["img00_square"] * 1)


def test_changed_input_is_recomputed(tmp_path):
    _make_inputs(tmp_path / "in", n=2)
    out = tmp_path / "out"
    batch.segment_many(tmp_path / "in", out, method="otsu")
    img = np.zeros((30, 30), np.uint8)
    img[5:12, 5:12] = 200
    Image.fromarray(img).save(tmp_path / "in" / "img00_square.png")
    res = batch.segment_many(tmp_path / "in", out, method="otsu", overwrite=True)
    assert [r["status"] for r in res.records] == ["done", "skipped"]
    np.testing.assert_array_equal(_labels(out)["img00_square"], (img > 100).astype(np.uint8))


def test_bad_files_are_skipped_and_logged(tmp_path):
    truth = _make_inputs(tmp_path / "in", n=3)
    (tmp_path / "in" / "broken.png").write_bytes(b"this is not a png")
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(tmp_path / "in" / "constant.png")
    (tmp_path / "out").mkdir()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "out" / "img02_triangle.png")
    res = batch.segment_many(tmp_path / "in", tmp_path / "out", method="otsu")
    assert not res.ok
    by_name = {Path(r["input"]).name: r for r in res.records}
    assert by_name["img00_square.png"]["status"] == "done"
    assert by_name["img01_circle.png"]["status"] == "done"
    assert by_name["broken.png"]["status"] == "failed"
    assert by_name["constant.png"]["status"] == "failed"
    assert "constant" in by_name["constant.png"]["error"]["message"]
    foreign = by_name["img02_triangle.png"]
    assert foreign["status"] == "failed" and "already exists" in foreign["error"]["message"]
    assert not (tmp_path / "out" / "broken.png").exists()
    assert not (tmp_path / "out" / "constant.png").exists()
    log = batch.read_log(tmp_path / "out" / batch.LOG_NAME)
    failed = [r for r in log if r.get("status") == "failed"]
    assert {Path(r["input"]).name for r in failed} == {"broken.png", "constant.png",
                                                        "img02_triangle.png"}
    assert all(r["error"]["type"] and r["error"]["message"] for r in failed)
    assert log[-1]["failed"] == 3 and log[-1]["done"] == 2
    assert len(truth) == 3


def test_errors_before_any_work(tmp_path):
    _make_inputs(tmp_path / "a", n=1)
    _make_inputs(tmp_path / "b", n=1)
    with pytest.raises(ValueError, match="has no parameter 'clases'.*Did you mean 'classes'"):
        batch.segment_many(tmp_path / "a", tmp_path / "out", params={"clases": 3})
    with pytest.raises(ValueError, match="Unknown method"):
        batch.segment_many(tmp_path / "a", tmp_path / "out", method="otsuu")
    with pytest.raises(ValueError, match="matches no image files"):
        batch.segment_many(tmp_path / "nothing*.png", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="input not found"):
        batch.segment_many(tmp_path / "nothing.png", tmp_path / "out")
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        batch.segment_many(tmp_path / "a", tmp_path / "out", executor=object())
    assert not (tmp_path / "out").exists()


def test_same_stem_and_inputs_are_protected(tmp_path):
    truth = _make_inputs(tmp_path / "a", n=1)
    _make_inputs(tmp_path / "b", n=1)
    res = batch.segment_many([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert [r["status"] for r in res.records] == ["done", "failed"]
    assert "same output" in res.records[1]["error"]["message"]
    # an output that would land on an input is refused, even with overwrite
    src = tmp_path / "a" / "img00_square.png"
    before = src.read_bytes()
    res = batch.segment_many([src], tmp_path / "a", overwrite=True)
    assert res.records[0]["status"] == "failed"
    assert "never writes over an input" in res.records[0]["error"]["message"]
    assert src.read_bytes() == before
    assert len(truth) == 1


def test_overlay_and_grey_conversion(tmp_path, monkeypatch):
    import physeg
    from physeg.api import Method

    _make_inputs(tmp_path / "in", n=2)  # img01 is RGB
    seen = []

    def func(image, *, channel_axis, spacing, rng, **kw):
        seen.append((image.ndim, channel_axis, image.dtype, rng))
        return (image > 0.5).astype(np.uint8)

    monkeypatch.setitem(physeg.families._registry._REGISTRY, "grey-only",
                        Method("grey-only", func, (), "test", supports_multichannel=False))
    res = batch.segment_many(tmp_path / "in", tmp_path / "out", method="grey-only",
                             overlay=True, rng=11)
    assert res.ok
    assert seen == [(2, None, np.dtype(np.uint8), 11), (2, None, np.dtype(np.float32), 11)]
    ov = np.asarray(Image.open(tmp_path / "out" / "overlays" / "img01_circle.png"))
    assert ov.shape == (44 + LEGEND_ROW, 48, 3) and ov.dtype == np.uint8
    again = batch.segment_many(tmp_path / "in", tmp_path / "out", method="grey-only",
                               overlay=True, rng=11)
    assert again.count("skipped") == 2


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        pio.write_labels(tmp_path / "x.png", np.ones((4, 4), np.uint8), provenance={"key": "k"})
    assert list(tmp_path.iterdir()) == []


def test_write_labels_formats_and_provenance(tmp_path):
    big = np.arange(300 * 2).reshape(20, 30).astype(np.int64)
    pio.write_labels(tmp_path / "a.png", big, provenance={"key": "abc"})
    back = np.asarray(Image.open(tmp_path / "a.png"))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, big)
    assert pio.read_provenance(tmp_path / "a.png") == {"key": "abc"}
    vol = np.zeros((3, 8, 8), np.uint8)
    vol[1, 2:5, 2:5] = 1
    pio.write_labels(tmp_path / "v.tif", vol, provenance={"key": "vol"})
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(tmp_path / "v.tif"), vol)
    assert pio.read_provenance(tmp_path / "v.tif") == {"key": "vol"}
    with pytest.raises(ValueError, match="Use a .tif suffix"):
        pio.write_labels(tmp_path / "v.png", vol)
    with pytest.raises(ValueError, match="must be integers"):
        pio.write_labels(tmp_path / "f.png", np.full((4, 4), 0.5))
    (tmp_path / "junk.png").write_bytes(b"junk")
    assert pio.read_provenance(tmp_path / "junk.png") is None
    assert pio.read_provenance(tmp_path / "v.png") is None  # absent


def test_segment_file_is_a_pure_json_record(tmp_path):
    """The per-file worker returns a JSON-able record and never raises for a bad file."""
    _make_inputs(tmp_path / "in", n=1)
    src = next((tmp_path / "in").glob("*.png"))
    job = batch.Job(input=str(src), output=str(tmp_path / "o" / "a.png"), method="otsu",
                    params={"classes": 2})
    rec = batch.segment_file(job)
    assert rec["status"] == "done" and rec["labels"] == 2 and rec["error"] is None
    json.dumps(rec)
    missing = dataclasses.replace(job, input=str(tmp_path / "missing.png"))
    rec = batch.segment_file(missing)
    assert rec["status"] == "failed" and "missing.png" in rec["error"]["message"]
    json.dumps(rec)


def test_plan_validates_once_before_any_work(tmp_path):
    _make_inputs(tmp_path / "in", n=2)
    plan = batch.plan_batch(tmp_path / "in", tmp_path / "out", params={"classes": "3"},
                            channel_axis="none")
    assert plan.params == {"classes": 3} and plan.method == "otsu"  # converted by the schema
    assert all(job.params == {"classes": 3} and job.channel_axis is None for job in plan.jobs)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="--channel-axis"):
        batch.plan_batch(tmp_path / "in", tmp_path / "out", channel_axis="left")


def test_volume_tiff_input(tmp_path):
    import tifffile

    vol = np.zeros((4, 16, 16), np.uint8)
    vol[1:3, 4:12, 4:12] = 180
    tifffile.imwrite(tmp_path / "vol.tif", vol, photometric="minisblack")
    res = batch.segment_many([tmp_path / "vol.tif"], tmp_path / "out", method="otsu")
    assert res.ok
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "vol.tif"),
                                  (vol > 0).astype(np.uint8))


def test_read_log_ignores_a_torn_line(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text(json.dumps({"event": "file", "status": "done"}) + "\n{\"event\": \"fi")
    assert batch.read_log(p) == [{"event": "file", "status": "done"}]


def test_cli_scheduler_option(tmp_path):
    """``physeg segment --scheduler ADDRESS`` runs the same worker on a dask cluster."""
    from typer.testing import CliRunner

    from physeg.cli import app

    truth = _make_inputs(tmp_path / "in", n=3)
    client, cluster = _dask_client()
    try:
        res = CliRunner().invoke(app, ["segment", str(tmp_path / "in"), "-o",
                                       str(tmp_path / "out"), "--scheduler",
                                       cluster.scheduler_address], catch_exceptions=False)
    finally:
        client.close()
        cluster.close()
    assert res.exit_code == 0, res.output
    assert "segmented 3 of 3" in res.output
    got = _labels(tmp_path / "out")
    for name, mask in truth.items():
        np.testing.assert_array_equal(got[name], mask.astype(np.uint8))
    log = batch.read_log(tmp_path / "out" / batch.LOG_NAME)
    assert log[0]["executor"] == "ClientExecutor"
    res = CliRunner().invoke(app, ["segment", str(tmp_path / "in"), "-o", str(tmp_path / "o2"),
                                   "--scheduler", "tcp://x:1", "--jobs", "2"])
    assert res.exit_code == 2 and "alternatives" in res.output


def test_files_with_channels_are_never_volumes(tmp_path):
    # grey+alpha PNG = grey; a 2D TIFF with 5 samples per pixel = 5 channels (issue 14 item 8)
    import tifffile

    grey = np.zeros((24, 20), np.uint8)
    grey[6:18, 5:15] = 200
    (tmp_path / "in").mkdir()
    Image.fromarray(np.stack([grey, np.full_like(grey, 255)], -1), mode="LA").save(
        tmp_path / "in" / "la.png")
    five = np.repeat(grey[..., None], 5, axis=-1)
    tifffile.imwrite(tmp_path / "in" / "five.tif", five, photometric="minisblack",
                     planarconfig="contig")
    res = batch.segment_many(tmp_path / "in", tmp_path / "out", method="otsu", overlay=True)
    assert res.ok, res.failed
    for name in ("la", "five"):
        np.testing.assert_array_equal(pio.read_mask(tmp_path / "out" / f"{name}.png"),
                                      (grey > 0).astype(np.uint8))
        shape = pio.read_image(tmp_path / "out" / "overlays" / f"{name}.png").shape
        assert shape == (24 + LEGEND_ROW, 20, 3)  # the picture, then its legend strip
    # ... unless the user says volume
    vol = batch.segment_many(tmp_path / "in" / "five.tif", tmp_path / "vol", method="otsu",
                             channel_axis="none", suffix=".tif")
    assert vol.ok and pio.read_mask(tmp_path / "vol" / "five.tif").shape == (24, 20, 5)


def test_an_output_that_appears_meanwhile_is_reported_not_replaced(tmp_path, monkeypatch):
    _make_inputs(tmp_path / "in", n=2)
    out = tmp_path / "out"
    real_read = pio.read_image_and_axis
    theirs = np.full((64, 64), 7, np.uint8)

    def read_then_another_run_writes(path, **kwargs):
        got = real_read(path, **kwargs)
        target = out / (Path(path).stem + ".png")
        pio.write_labels(target, theirs, provenance={"key": "another run"})
        return got

    monkeypatch.setattr(pio, "read_image_and_axis", read_then_another_run_writes)
    res = batch.segment_many(tmp_path / "in", out, method="otsu")
    assert res.count("failed") == 2
    assert all("appeared meanwhile" in r["error"]["message"] for r in res.records)
    for p in out.glob("*.png"):
        np.testing.assert_array_equal(pio.read_mask(p), theirs)


def test_a_concurrent_run_with_the_same_parameters_makes_the_file_skipped(tmp_path,
                                                                          monkeypatch):
    _make_inputs(tmp_path / "in", n=2)
    first = batch.segment_many(tmp_path / "in", tmp_path / "done", method="otsu", log=None)
    real_read = pio.read_image_and_axis

    def read_then_the_twin_run_writes(path, **kwargs):
        got = real_read(path, **kwargs)
        name = Path(path).stem + ".png"
        (tmp_path / "out").mkdir(exist_ok=True)
        os.link(tmp_path / "done" / name, tmp_path / "out" / name)  # same bytes, same key
        return got

    monkeypatch.setattr(pio, "read_image_and_axis", read_then_the_twin_run_writes)
    res = batch.segment_many(tmp_path / "in", tmp_path / "out", method="otsu")
    assert first.ok and res.ok and res.count("skipped") == 2
    assert all("written meanwhile" in r["note"] for r in res.records)
