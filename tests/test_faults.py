"""Fault injection on real runs: kill -9, Ctrl-C, resume, disk full, two concurrent runs.

After each fault the same three things hold: every output decodes with the input's shape,
the log parses line by line, and no input's checksum changed. The runs are real processes
(``python driver.py segment ...``): ``driver.py`` (written into ``tmp_path``) is the physeg
CLI with one extra registered method, ``sleepy``, which sleeps ``$SLEEPY_SECONDS`` and then
thresholds at the mean, so that a run is slow enough to be interrupted mid-way. Spawned pool
workers import the driver as their main module, so they know the method too.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from physeg import batch
from physeg import io as pio

SHAPE = (32, 32)

DRIVER = '''"""The physeg CLI plus a slow test method, 'sleepy' (tests/test_faults.py)."""
import os
import sys
import time

import numpy as np

from physeg.api import Method, register


def sleepy(image, *, channel_axis=None, spacing=None, rng=None):
    time.sleep(float(os.environ.get("SLEEPY_SECONDS", "0")))
    return (np.asarray(image) > np.mean(image)).astype(np.uint8)


register(Method(name="sleepy", func=sleepy, params=(), summary="sleeps, then thresholds",
                supports_3d=True, supports_multichannel=False))

if __name__ == "__main__":
    from physeg.cli import main

    main(sys.argv[1:])
'''


# --------------------------------------------------------------------------- helpers


def _inputs(folder: Path, n: int, shape: tuple[int, int] = SHAPE) -> dict[str, str]:
    rng = np.random.default_rng(7)
    for i in range(n):
        img = (rng.random(shape) * 120).astype(np.uint8)
        img[4:shape[0] // 2, 4:shape[1] // 2] += 120
        pio.write_image(folder / f"img{i:02d}.png", img)
    return _checksums(folder)


def _checksums(folder: Path) -> dict[str, str]:
    return {p.name: pio.file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _driver(tmp_path: Path) -> Path:
    path = tmp_path / "driver.py"
    path.write_text(DRIVER)
    return path


def _env(seconds: float) -> dict[str, str]:
    src = str(Path(pio.__file__).resolve().parents[2])  # the physeg under test
    path = os.pathsep.join([src] + [p for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    return dict(os.environ, SLEEPY_SECONDS=str(seconds), PYTHONPATH=path)


def _start(tmp_path: Path, *args: str, seconds: float = 0.0, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(_driver(tmp_path)), "segment", *args],
                            cwd=tmp_path, env=_env(seconds), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is pending


def _wait_for(predicate, timeout: float, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def _log_lines(log: Path) -> list[dict]:
    """Every line of the log must parse (no torn line)."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _check_outputs(out: Path, inputs: dict[str, str], in_dir: Path) -> set[str]:
    """Every label file decodes with the input's shape; no temporary file is left; inputs
    unchanged. Returns the stems written."""
    assert _checksums(in_dir) == inputs
    assert not list(out.glob(f".*{pio.TEMP_SUFFIX}"))
    stems = set()
    for p in out.glob("*.png"):
        labels = pio.read_mask(p)
        assert labels.shape == SHAPE
        assert pio.read_provenance(p) is not None
        stems.add(p.stem)
    return stems


# --------------------------------------------------------------------------- kill -9


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_kill_9_of_the_parent_leaves_no_orphans_and_resumes(tmp_path):
    inputs = _inputs(tmp_path / "in", 6)
    proc = _start(tmp_path, "in", "-o", "out", "-m", "sleepy", "--jobs", "2", seconds=2.0)
    kids: list[int] = []
    try:
        # two workers and the resource tracker, with the workers inside their first file
        assert _wait_for(lambda: len(_children(proc.pid)) >= 3, 60), "no pool started"
        kids = _children(proc.pid)
        time.sleep(0.8)
        proc.kill()
        proc.wait(timeout=10)
        assert _wait_for(lambda: not any(_running(k) for k in kids), 10), (
            f"orphans still running: {[k for k in kids if _running(k)]}")
    finally:
        for k in kids:  # never leave our own processes behind, even when the test fails
            if _running(k):
                os.kill(k, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    _log_lines(tmp_path / "out" / batch.LOG_NAME)
    done_before = _check_outputs(tmp_path / "out", inputs, tmp_path / "in")
    resumed = _start(tmp_path, "in", "-o", "out", "-m", "sleepy")
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert (f"segmented {len(inputs) - len(done_before)} of {len(inputs)} file(s)" in stdout
            and f"({len(done_before)} already done)" in stdout) or not done_before
    assert _check_outputs(tmp_path / "out", inputs, tmp_path / "in") == {
        Path(n).stem for n in inputs}
    records = _log_lines(tmp_path / "out" / batch.LOG_NAME)
    assert records[-1]["event"] == "summary" and records[-1]["failed"] == 0


# --------------------------------------------------------------------------- Ctrl-C


def test_sigint_stops_cleanly_and_resumes(tmp_path):
    inputs = _inputs(tmp_path / "in", 6)
    log = tmp_path / "out" / batch.LOG_NAME
    proc = _start(tmp_path, "in", "-o", "out", "-m", "sleepy", "--jobs", "2", seconds=1.0)
    try:
        assert _wait_for(lambda: log.exists() and '"file"' in log.read_text(), 60)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted:" in stderr and "re-run the same command to resume" in stderr
    records = _log_lines(log)
    assert records[-1]["event"] == "summary" and records[-1]["interrupted"] is True
    _check_outputs(tmp_path / "out", inputs, tmp_path / "in")
    resumed = _start(tmp_path, "in", "-o", "out", "-m", "sleepy")
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert len(_check_outputs(tmp_path / "out", inputs, tmp_path / "in")) == len(inputs)


# --------------------------------------------------------------------------- disk full


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                       check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def test_disk_full_on_a_small_tmpfs_stops_with_a_summary_and_resumes(tmp_path):
    full = tmp_path / "full"
    if not _mount_tmpfs(full, "48k"):
        pytest.skip("mounting a tmpfs is not permitted here (the injected ENOSPC test runs)")
    try:
        inputs = _inputs(tmp_path / "in", 30)
        proc = _start(tmp_path, "in", "-o", str(full / "out"), "-m", "sleepy")
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, stdout + stderr
        assert "Traceback" not in stderr
        assert "stopped:" in stderr and "no space left on the device" in stderr
        assert "re-run the same command to resume" in stderr
        records = _log_lines(full / "out" / batch.LOG_NAME)  # whole lines only
        done = _check_outputs(full / "out", inputs, tmp_path / "in")
        assert 0 < len(done) < len(inputs)
        logged = {Path(r["input"]).stem for r in records if r.get("status") == "done"}
        assert logged <= done  # the log never claims a file that is not there
        subprocess.run(["mount", "-o", "remount,size=4m", str(full)], check=True, timeout=10)
        resumed = _start(tmp_path, "in", "-o", str(full / "out"), "-m", "sleepy")
        stdout, stderr = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, stderr
        assert len(_check_outputs(full / "out", inputs, tmp_path / "in")) == len(inputs)
    finally:
        subprocess.run(["umount", str(full)], capture_output=True, timeout=10)


def test_disk_full_injected_stops_the_batch_with_whole_log_lines(tmp_path, monkeypatch):
    inputs = _inputs(tmp_path / "in", 8)
    out = tmp_path / "out"
    real_write = os.write
    writes = {"n": 0}

    def fills_up(fd, data):
        writes["n"] += 1
        if writes["n"] > 9:  # the run record, then a few files and their log lines
            n = real_write(fd, bytes(data[: len(data) // 2]))  # a short write, then full
            if n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fills_up)
    res = batch.segment_many(tmp_path / "in", out, method="otsu")
    monkeypatch.undo()
    assert res.stopped is not None and "no space left on the device" in res.stopped
    assert len(res.records) < len(inputs)
    records = _log_lines(out / batch.LOG_NAME)
    assert records[0]["event"] == "run"
    done = _check_outputs(out, inputs, tmp_path / "in")
    assert {Path(r["input"]).stem for r in records if r.get("status") == "done"} <= done
    again = batch.segment_many(tmp_path / "in", out, method="otsu")
    assert again.ok and again.stopped is None
    assert again.count("skipped") == len(done) and again.count("done") == len(inputs) - len(done)
    assert _log_lines(out / batch.LOG_NAME)[-1]["event"] == "summary"


# --------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("params", [("classes=2", "classes=3"), ("classes=2", "classes=2")],
                         ids=["different-params", "same-params"])
def test_two_concurrent_runs_never_replace_each_others_outputs(tmp_path, params):
    inputs = _inputs(tmp_path / "in", 12)
    runs = [_start(tmp_path, "in", "-o", "out", "-m", "otsu", "-p", p) for p in params]
    results = [r.communicate(timeout=120) for r in runs]
    for (_, stderr), run in zip(results, runs, strict=True):
        assert "Traceback" not in stderr
        assert run.returncode in (0, 1), stderr
    written = _check_outputs(tmp_path / "out", inputs, tmp_path / "in")
    assert written == {Path(n).stem for n in inputs}
    records = [r for r in _log_lines(tmp_path / "out" / batch.LOG_NAME)
               if r["event"] == "file"]
    assert len(records) == 2 * len(inputs)  # both runs logged every file, in whole lines
    for stem in written:
        mine = [r for r in records if Path(r["input"]).stem == stem]
        done = [r for r in mine if r["status"] == "done"]
        assert len(done) == 1, mine  # written exactly once
        prov = pio.read_provenance(tmp_path / "out" / f"{stem}.png")
        assert prov["params"] == done[0]["params"]  # by the run that says it wrote it
        (loser,) = [r for r in mine if r is not done[0]]
        if params[0] == params[1]:
            assert loser["status"] == "skipped"
        else:
            assert loser["status"] == "failed"
            assert ("appeared meanwhile" in loser["error"]["message"]
                    or "already exists" in loser["error"]["message"])
