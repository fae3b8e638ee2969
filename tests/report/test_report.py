"""physeg.report: bench over annotated folders, the JSON/Markdown/HTML report, a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from physeg import io as pio
from physeg import report
from physeg.cli import app
from physeg.data.synthetic import shape_image
from physeg.overlay import write_overlay


def _u8(img):
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _dataset(root, *, dark=False, bad=False):
    """images/ + masks/ of clean shapes; ``dark`` puts a dark object on a bright background."""
    for i, shape in enumerate(("square", "circle", "triangle")):
        fg, bg = (0.2, 0.8) if dark else (0.8, 0.2)
        img, mask = shape_image(shape, (40, 44), shape_value=fg, background_value=bg)
        if i == 2:  # one colour image
            img = np.stack([img, img, 0.5 * img], axis=-1)
        pio.write_image(root / "images" / f"s{i}.png", _u8(img))
        pio.write_labels(root / "masks" / f"s{i}.png", mask)
    if bad:
        (root / "images" / "s9.png").write_bytes(b"not a png")
        pio.write_labels(root / "masks" / "s9.png", np.zeros((40, 44), np.uint8))
    return root


@pytest.fixture
def bench_report(tmp_path):
    bright = _dataset(tmp_path / "bright")
    dark = _dataset(tmp_path / "dark", dark=True, bad=True)
    out = tmp_path / "report"
    rep = report.run_bench([bright, dark], ["heat", "otsu"], out, gallery=2,
                           params={"heat": {"lam": 2.0}})
    return rep, out


def test_bench_tables_scores_and_files(bench_report):
    rep, out = bench_report
    assert {p.name for p in out.iterdir()} >= {"index.html", "report.md", "report.json", "img",
                                              "labels"}
    doc = json.loads((out / "report.json").read_text())
    assert [d["name"] for d in doc["datasets"]] == ["bright", "dark"]
    bright, dark = doc["datasets"]
    # the anchor comes first, whatever the order asked for
    assert [r["method"] for r in bright["table"]] == ["otsu", "heat"]
    assert bright["table"][0]["anchor"] and not bright["table"][1]["anchor"]
    # clean piecewise-constant shapes: Otsu is exact; labels are scored as they are
    # (label 1 vs mask > 0), so on the dark set Otsu is exact or exactly inverted, depending
    # on which phase it calls the object
    assert doc["scoring"] == {"match": False, "rule": "scored: label 1 vs mask>0"}
    otsu = bright["table"][0]
    assert otsu["metrics"]["dice"]["mean"] == 1.0
    assert otsu["metrics"]["hausdorff95"]["mean"] == 0.0
    assert otsu["object_dice"] == 1.0 and otsu["inverted_dice"] == 0.0
    otsu = dark["table"][0]
    assert {otsu["metrics"]["dice"]["mean"], otsu["inverted_dice"]} == {0.0, 1.0}
    assert dark["table"][0]["failed"] == 1 and bright["table"][0]["failed"] == 0
    # the galleries' panels are explained once, on the page and in the Markdown
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert page.count("<div class='legend'><b>Legend</b>") == 1
    assert page.index("class='legend'") < page.index("class='gallery'")
    assert md.count("Legend: truth and prediction: label 0 (background) black") == 1
    assert doc["params"]["heat"]["lam"] == 2.0 and doc["params"]["otsu"]["classes"] == 2
    assert doc["versions"]["numpy"] == np.__version__
    recs = [r for r in doc["records"] if r["status"] == "done"]
    assert len(recs) == 2 * 3 + 2 * 3
    assert all(r["seconds"] > 0 and r["peak_mb"] > 0 for r in recs)
    failed = [r for r in doc["records"] if r["status"] == "failed"]
    assert {r["id"] for r in failed} == {"s9"} and all(r["error"] for r in failed)
    # galleries: worst first (the failed image leads), every picture exists
    g = {x["method"]: x["items"] for x in dark["gallery"]}
    assert g["otsu"][0]["id"] == "s9" and g["otsu"][0]["status"] == "failed"
    for ds in doc["datasets"]:
        for x in ds["gallery"]:
            scores = [it["score"] for it in x["items"] if it["status"] == "done"]
            assert scores == sorted(scores)
            for it in x["items"]:
                for p in it["panels"]:
                    assert (out / p["src"]).is_file()
    ok_items = [it for it in g["heat"] if it["status"] == "done"]
    assert [p["caption"] for p in ok_items[0]["panels"]] == ["image", "truth", "prediction",
                                                            "overlay"]
    # Markdown and HTML carry the same tables and state the scoring rule
    md = (out / "report.md").read_text()
    assert "**scored: label 1 vs mask>0 (labels as they are" in md
    assert "scored: label 1 vs mask&gt;0 (labels as they are" in (out / "index.html").read_text()
    assert "| otsu (anchor) | 3 | 0 | **1.000 ± 0.000** |" in md
    page = (out / "index.html").read_text()
    assert page.count("<table class='metrics'") == 2
    assert "otsu (anchor)" in page and "<h2 id='galleries'>" in page


def test_bench_match_maps_the_dark_phase(tmp_path):
    dark = _dataset(tmp_path / "dark", dark=True)
    rep = report.run_bench([dark], ["otsu"], tmp_path / "r", gallery=1, match=True)
    assert rep["scoring"] == {"match": True, "rule": "scored: Hungarian-matched labels"}
    assert rep["datasets"][0]["table"][0]["metrics"]["dice"]["mean"] == 1.0
    assert "scored: Hungarian-matched labels (each prediction mapped" in \
        (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize("match", [False, True])
def test_bench_and_evaluate_give_identical_numbers(tmp_path, match):
    """Both commands score the same label files by physeg.metrics.score_labels."""
    runner = CliRunner()
    ds = _dataset(tmp_path / "dark", dark=True)
    # a multi-label truth beside the binary ones: labels 1 and 2 (halves of the object)
    mask = pio.read_mask(ds / "masks" / "s1.png").astype(np.uint8)
    mask[:, 22:] *= 2
    pio.write_labels(ds / "masks" / "s1.png", mask, overwrite=True)
    metrics = "dice,iou,boundary_f1,hausdorff95"
    flag = ["--match"] if match else []
    res = runner.invoke(app, ["bench", str(ds), "--methods", "otsu,heat", "-o",
                              str(tmp_path / "r"), "--metrics", metrics, *flag],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rule = ("scored: Hungarian-matched labels" if match else
            "scored: label 1 vs mask>0 (binary masks), label k vs mask label k (others)")
    assert rule in res.output
    bench = json.loads((tmp_path / "r" / "report.json").read_text())
    assert bench["scoring"]["rule"] == rule
    for method in ("otsu", "heat"):
        res = runner.invoke(app, ["evaluate", str(tmp_path / "r" / "labels" / "dark" / method),
                                  str(ds / "masks"), "--metrics", metrics, "--json", *flag],
                            catch_exceptions=False)
        assert res.exit_code == 0, res.output
        ev = json.loads(res.stdout)
        assert ev["scoring"] == {"match": match, "rule": rule}
        by_id = {r["id"]: r for r in ev["images"]}
        recs = [r for r in bench["records"] if r["method"] == method]
        assert len(recs) == 3
        for r in recs:
            for name in ("dice", "iou", "boundary_f1", "hausdorff95"):
                assert by_id[r["id"]][name] == r["metrics"][name], (method, r["id"], name)


def test_bench_errors(tmp_path):
    ds = _dataset(tmp_path / "d")
    with pytest.raises(ValueError, match="Did you mean 'otsu'"):
        report.run_bench([ds], ["otsuu"], tmp_path / "r")
    with pytest.raises(ValueError, match="not among the methods"):
        report.run_bench([ds], ["otsu"], tmp_path / "r", params={"heat": {"lam": 1}})
    with pytest.raises(ValueError, match="no method given"):
        report.run_bench([ds], [], tmp_path / "r")
    with pytest.raises(ValueError, match="names must differ"):
        report.run_bench([ds, ds], ["otsu"], tmp_path / "r")


def test_bench_and_evaluate_commands(tmp_path):
    runner = CliRunner()
    ds = _dataset(tmp_path / "bright")
    res = runner.invoke(app, ["bench", str(ds), "--methods", "otsu", "-o",
                              str(tmp_path / "r"), "--param", "otsu.foreground=bright"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "dice=1.0000" in res.output and (tmp_path / "r" / "index.html").is_file()
    n = len(list((ds / "images").iterdir()))
    assert "bench ━" in res.stderr and f" {n}/{n} " in res.stderr  # the total, not "?"
    assert "/?" not in res.stderr
    res = runner.invoke(app, ["bench", str(ds), "-o", str(tmp_path / "r2"), "--param", "x=1"])
    assert res.exit_code == 2 and "METHOD.KEY=VALUE" in res.output
    # segment --overlay reuses the report's overlay writer; evaluate --report the renderer
    res = runner.invoke(app, ["segment", str(ds / "images"), "-o", str(tmp_path / "pred"),
                              "--overlay"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == 3
    res = runner.invoke(app, ["evaluate", str(tmp_path / "pred"), str(ds / "masks"),
                              "--report", str(tmp_path / "ev")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert doc["kind"] == "evaluate" and doc["datasets"][0]["table"][0]["n"] == 3
    assert doc["datasets"][0]["table"][0]["metrics"]["dice"]["mean"] == 1.0
    items = doc["datasets"][0]["gallery"][0]["items"]
    assert [p["caption"] for p in items[0]["panels"]] == ["truth", "prediction", "errors"]


def test_write_overlay(tmp_path):
    img = np.zeros((30, 50), np.uint8)
    lab = np.zeros((30, 50), np.uint8)
    lab[5:20, 10:30] = 1
    p = write_overlay(tmp_path / "o" / "x.png", img, lab, max_side=25, legend=False)
    rgb = pio.read_image(p)
    assert rgb.shape == (15, 25, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[5, 10].tolist() != [0, 0, 0]


def test_written_overlays_carry_a_legend(tmp_path):
    from physeg.overlay import LEGEND_ROW, PALETTE, legend_strip, overlay

    img = np.zeros((40, 120), np.uint8)
    lab = np.zeros((40, 120), np.uint8)
    lab[5:20, 10:30], lab[25:35, 60:90] = 1, 3
    rgb = pio.read_image(write_overlay(tmp_path / "x.png", img, lab))
    assert rgb.shape == (40 + LEGEND_ROW, 120, 3)
    np.testing.assert_array_equal(rgb[:40], overlay(img, lab))  # the picture is unchanged
    strip = rgb[40:].reshape(-1, 3).tolist()
    for label in (1, 3):  # a swatch of each label present, none of an absent one
        assert PALETTE[label - 1].tolist() in strip
    assert PALETTE[1].tolist() not in strip
    empty = legend_strip(np.zeros((4, 4), int), 200)  # says there is nothing, not blank
    assert empty.shape == (LEGEND_ROW, 200, 3) and (empty > 200).any()


def test_report_pages_carry_the_panel_legend():
    from physeg.report._render import ERROR_LEGEND, _legend_html, _legend_markdown

    page, md = _legend_html(), _legend_markdown()
    for _rgb, text in ERROR_LEGEND:
        assert text in page and text in md
    assert "label 0 (background)" in page and "false positive" in md


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium in PATH (Debian: apt-get install chromium)")


_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_page_renders_in_a_real_browser(bench_report, tmp_path):
    """Load index.html in headless chromium: tables present, every image decoded, no errors."""
    exe = _chromium()
    _, out = bench_report
    url = (out / "index.html").resolve().as_uri()
    proc = subprocess.run(
        [exe, *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--enable-logging=stderr", "--v=0", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    check = re.search(r'<p id="render-check"([^>]*)>', dom)
    assert check, dom[-2000:]
    attrs = dict(re.findall(r'data-([\w-]+)="(\d+)"', check.group(1)))
    n_img = (out / "index.html").read_text().count("<img ")
    assert n_img > 10
    assert attrs == {"images-ok": str(n_img), "images-broken": "0", "tables": "4"}
    assert dom.count("<table") == 4 and dom.count("<tr") > 10
    console_errors = [ln for ln in proc.stderr.splitlines()
                      if "CONSOLE" in ln or "Uncaught" in ln or "Failed to load resource" in ln
                      or "net::ERR" in ln]
    assert console_errors == []


def test_report_pictures_never_replace_an_input(tmp_path):
    from physeg.report._render import write_png

    src = pio.write_image(tmp_path / "img" / "a_truth.png", np.zeros((4, 4), np.uint8))
    before = src.read_bytes()
    with pytest.raises(pio.ProtectedPathError, match="never writes over an input"):
        write_png(src, np.zeros((4, 4, 3), np.uint8), (src,))
    assert src.read_bytes() == before
