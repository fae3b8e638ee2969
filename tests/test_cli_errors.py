"""The CLI over the bad-input battery: one clear line and exit 2 (or that file failed, exit 1),
never a Python traceback, never a write into an input, user text printed as typed.

Each case builds its own small world in ``tmp_path`` (three 24x24 PNGs in ``in/``, masks in
``gt/``) and runs the command in-process (``CliRunner``: an exception that escapes the command
is a traceback for a real user); three cases also run ``python -m physeg.cli`` as a real
process and read its stderr.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from physeg import io as pio
from physeg.cli import app

runner = CliRunner()


def _world(root: Path) -> dict[str, bytes]:
    """Three grey PNGs in ``in/`` and their masks in ``gt/``; returns the inputs' bytes."""
    for i, name in enumerate(("a", "b", "c")):
        img = np.zeros((24, 24), np.uint8)
        img[4 + i:16, 6:18] = 200
        pio.write_image(root / "in" / f"{name}.png", img)
        pio.write_labels(root / "gt" / f"{name}.png", (img > 0).astype(np.uint8))
    return _checksums(root)


def _checksums(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for sub in ("in", "gt") if (root / sub).is_dir() for p in sorted((root / sub).iterdir())
            if p.is_file()}


def _png_declaring(rows: int, cols: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, 0, 0,
                                                              0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _run(root: Path, *args: str):
    old = os.getcwd()
    os.chdir(root)
    try:
        return runner.invoke(app, list(args))
    finally:
        os.chdir(old)


def _no_traceback(res) -> None:
    escaped = res.exception is not None and not isinstance(res.exception, SystemExit)
    assert not escaped, f"exception escaped the command: {res.exception!r}"
    assert "Traceback" not in res.output


# Each case: (id, setup(root) -> None, argv, exit code, text expected in the output).
def _log_into_input(root):
    pass


def _existing_file_as_out(root):
    (root / "out.txt").write_text("not a folder")


def _log_is_a_folder(root):
    (root / "logs").mkdir()


def _link_loop_at_output(root):
    (root / "out").mkdir()
    (root / "out" / "a.png").symlink_to("a.png")


def _out_is_a_link_loop(root):
    (root / "loop").symlink_to("loop")


def _out_below_a_file(root):
    (root / "file").write_text("x")


def _markup_in_a_file_name(root):
    (root / "in" / "x[").mkdir()
    (root / "in" / "x[" / "y]z.png").write_bytes(b"not a png")
    pio.write_image(root / "in" / "[bold]b.png", np.arange(64, dtype=np.uint8).reshape(8, 8))


def _huge_png(root):
    (root / "in" / "huge.png").write_bytes(_png_declaring(100_000, 100_000))


def _empty_masks(root):
    (root / "nomasks").mkdir()


def _rgb_input(root):
    rgb = np.zeros((24, 24, 3), np.uint8)
    rgb[6:18, 6:18] = (200, 150, 100)
    pio.write_image(root / "rgb" / "x.png", rgb)


def _notes_as_log(root):
    (root / "notes.txt").write_text("my notes\n")


CASES = [
    ("log-into-an-image", _log_into_input,
     ["segment", "in/a.png", "-o", "out", "--log", "in/b.png"], 2, "a .png name is an image's"),
    ("log-into-an-image-with-overwrite", _log_into_input,
     ["segment", "in/a.png", "-o", "out", "--log", "in/b.png", "--overwrite"], 2,
     "a .png name is an image's"),
    ("log-into-an-input", _log_into_input,
     ["segment", "in", "-o", "out", "--log", "in/b.png", "--overwrite"], 2,
     "never writes over an input"),
    ("log-is-not-a-log", _notes_as_log,
     ["segment", "in", "-o", "out", "--log", "notes.txt"], 2, "is not a physeg log"),
    ("out-is-an-existing-file", _existing_file_as_out,
     ["segment", "in", "-o", "out.txt"], 2, "is an existing file; name a folder"),
    ("out-below-a-file", _out_below_a_file,
     ["segment", "in", "-o", "file/sub"], 2, "a part of the path is a file"),
    ("out-is-a-link-loop", _out_is_a_link_loop,
     ["segment", "in", "-o", "loop"], 2, "a symbolic link loops back on itself"),
    ("log-is-a-folder", _log_is_a_folder,
     ["segment", "in", "-o", "out", "--log", "logs"], 2, "it is a folder; name a file"),
    ("link-loop-at-an-output", _link_loop_at_output,
     ["segment", "in", "-o", "out"], 1, "link loop"),
    ("markup-in-a-param", _log_into_input,
     ["segment", "in", "-o", "out", "-p", "classes=[/x]"], 2, "[/x]"),
    ("markup-in-a-method", _log_into_input,
     ["segment", "in", "-o", "out", "-m", "[bold]otsu[/]"], 2, "'[bold]otsu[/]'"),
    ("markup-in-file-names", _markup_in_a_file_name,
     ["segment", "in/x[/y]z.png", "in/[bold]b.png", "-o", "[red]out"], 1, "x[/y]z.png"),
    ("oversized-png", _huge_png,
     ["segment", "in", "-o", "out"], 1,
     "too large: 10000000000 pixels (100000 x 100000) > limit 100000000; raise --max-pixels"),
    ("max-pixels-below-the-images", _log_into_input,
     ["segment", "in", "-o", "out", "--max-pixels", "100"], 1, "> limit 100"),
    ("2d-method-told-the-flag", _rgb_input,
     ["segment", "rgb/x.png", "-o", "out", "-m", "chan-vese", "--channel-axis", "none"], 1,
     "(on the command line: --channel-axis -1)"),
    ("fit-over-a-training-image", _log_into_input,
     ["fit", "-m", "heat", "--images", "in", "--masks", "gt", "-o", "in/a.png", "--overwrite"],
     2, "never writes over an input"),
    ("fit-over-a-mask", _log_into_input,
     ["fit", "-m", "heat", "--images", "in", "--masks", "gt", "-o", "gt/b.png", "--overwrite"],
     2, "never writes over an input"),
    ("fit-into-a-folder", _log_into_input,
     ["fit", "-m", "heat", "--images", "in", "--masks", "gt", "-o", "gt"], 2,
     "a directory with that name exists"),
    ("fit-empty-mask-folder", _empty_masks,
     ["fit", "-m", "heat", "--images", "in", "--masks", "nomasks", "-o", "m.json"], 2,
     "no mask files"),
]


@pytest.mark.parametrize("setup,argv,code,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_battery(tmp_path, setup, argv, code, expected):
    before = _world(tmp_path)
    setup(tmp_path)
    res = _run(tmp_path, *argv)
    _no_traceback(res)
    assert res.exit_code == code, res.output
    assert expected in res.output
    assert "strict=False" not in res.output  # API arguments only beside their CLI flag
    after = _checksums(tmp_path)
    assert {k: after[k] for k in before} == before  # no input changed


def test_markup_text_is_printed_as_typed(tmp_path):
    _world(tmp_path)
    _markup_in_a_file_name(tmp_path)
    res = _run(tmp_path, "segment", "in/x[/y]z.png", "in/[bold]b.png", "in/a.png", "-o",
               "[red]out")
    _no_traceback(res)
    assert res.exit_code == 1
    assert "failed in/x[/y]z.png:" in res.output  # the batch went on after it
    assert "segmented 2 of 3 file(s) with otsu -> [red]out" in res.output
    assert (tmp_path / "[red]out" / "[bold]b.png").is_file()


def test_max_pixels_zero_means_no_limit(tmp_path):
    _world(tmp_path)
    res = _run(tmp_path, "segment", "in", "-o", "out", "--max-pixels", "0")
    assert res.exit_code == 0, res.output


def test_jobs_are_capped_at_the_usable_cores(tmp_path):
    from physeg._runner import usable_cores

    _world(tmp_path)
    res = _run(tmp_path, "segment", "in", "-o", "out", "--jobs", "1000")
    _no_traceback(res)
    assert res.exit_code == 0, res.output
    cores = usable_cores()
    assert f"warning: --jobs 1000 is more than the {cores} usable cores; using {cores}." \
        in res.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "b.png",
                                                                        "c.png"]


def test_fit_refuses_an_existing_model_without_overwrite(tmp_path):
    _world(tmp_path)
    (tmp_path / "m.json").write_text("{}")
    res = _run(tmp_path, "fit", "-m", "heat", "--images", "in", "--masks", "gt", "-o", "m.json")
    assert res.exit_code == 2 and "already exists; use --overwrite" in res.output
    assert (tmp_path / "m.json").read_text() == "{}"


def _read_only_folder(tmp_path: Path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                       check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        if os.geteuid() == 0:
            pytest.skip("a read-only folder needs mount (root ignores permissions)")
        ro.chmod(0o555)
    return ro


def test_read_only_output_folder_is_one_line(tmp_path):
    _world(tmp_path)
    ro = _read_only_folder(tmp_path)
    try:
        res = _run(tmp_path, "segment", "in", "-o", str(ro))
        _no_traceback(res)
        assert res.exit_code == 2, res.output
        assert "cannot write into output folder" in res.output
        assert ("read-only" in res.output) or ("permission denied" in res.output)
        assert len(res.output.strip().splitlines()) == 1
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True, timeout=10)
        ro.chmod(0o755)


@pytest.mark.parametrize("argv,expected", [
    (["segment", "in", "-o", "out", "-p", "classes=[/x]"], "[/x]"),
    (["segment", "in", "-o", "out.txt"], "is an existing file"),
    (["segment", "in", "-o", "out", "--log", "in/b.png"], "never writes over an input"),
    (["segment", "in/a.png", "-o", "out", "--log", "in/b.png"], "is an image's"),
], ids=["markup", "out-is-a-file", "log-into-an-input", "log-into-an-image"])
def test_real_process_prints_no_traceback(tmp_path, argv, expected):
    before = _world(tmp_path)
    (tmp_path / "out.txt").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "physeg.cli", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and expected in proc.stderr
    after = _checksums(tmp_path)
    assert {k: after[k] for k in before} == before
