"""Render a report dict as ``report.json``, ``report.md`` and ``index.html``; its pictures.

The Markdown and the HTML are both rendered from the one JSON-able dict that
:func:`physeg.report.run_bench` and :func:`physeg.report.evaluation_report` build, so the three
files always agree. The page is static: inline CSS, relative ``img/`` links, no network, and a
small script that records in ``#render-check`` how many images decoded (the browser test reads
it). Undefined statistics (NaN) are ``null`` in the JSON and "–" in the tables; the best mean
per metric is in bold (lower is better for the surface distances). Pictures are uint8 RGB
thumbnails written through :mod:`physeg.io`'s atomic writer.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import display_rgb
from ..io import atomic_write_bytes
from ..overlay import PALETTE, png_bytes

__all__ = ["render", "write_png", "image_rgb", "label_rgb", "error_rgb", "middle_plane",
           "lower_is_better"]


# --------------------------------------------------------------------------- pictures


def write_png(path: str | os.PathLike, rgb: np.ndarray, protect: Any = ()) -> Path:
    """Write a uint8 picture atomically (replacing an older one: reports are re-rendered),
    never over one of the ``protect`` inputs (:class:`physeg.io.ProtectedPathError`)."""
    return atomic_write_bytes(path, png_bytes(rgb), overwrite=True, protect=protect)


def middle_plane(arr: np.ndarray, spatial_ndim: int) -> np.ndarray:
    return arr[arr.shape[0] // 2] if spatial_ndim == 3 else arr


def label_rgb(labels: np.ndarray) -> np.ndarray:
    """Labels in palette colours on black (0 = background)."""
    lab = np.asarray(labels)
    out = np.zeros(lab.shape + (3,), np.uint8)
    fg = lab > 0
    out[fg] = PALETTE[(lab[fg].astype(np.int64) - 1) % len(PALETTE)]
    return out


def error_rgb(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Agreement map: correct foreground white, false positives red, false negatives blue."""
    out = np.zeros(gt.shape + (3,), np.uint8)
    out[(pred == gt) & (gt > 0)] = (235, 235, 235)
    out[(pred != gt) & (pred > 0)] = (214, 39, 40)
    out[(pred != gt) & (pred == 0)] = (31, 119, 180)
    return out


#: What the gallery panels' colours mean: (RGB, text), shown above the galleries.
ERROR_LEGEND = (((235, 235, 235), "correct foreground"),
                ((214, 39, 40), "false positive (predicted, not in the truth)"),
                ((31, 119, 180), "false negative (in the truth, missed)"),
                ((0, 0, 0), "correct background"))
LEGEND_TEXT = ("truth and prediction: label 0 (background) black, labels 1, 2, 3, ... in "
               "the colours shown (cycled after 10); overlay: the prediction tinted on the "
               "image, boundaries opaque; errors: ")


def _hex(rgb: Any) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _legend_markdown() -> str:
    labels = ", ".join(f"{i + 1} {_hex(c)}" for i, c in enumerate(PALETTE[:5]))
    errors = "; ".join(f"{_hex(c)} = {t}" for c, t in ERROR_LEGEND)
    return f"Legend: {LEGEND_TEXT.replace('the colours shown', labels)}{errors}."


def _legend_html() -> str:
    def swatch(rgb: Any, text: str) -> str:
        return (f"<span class='sw'><i style='background:{_hex(rgb)}'></i>"
                f"{html.escape(text)}</span>")

    labels = "".join(swatch(c, f"label {i + 1}") for i, c in enumerate(PALETTE[:5]))
    errors = "".join(swatch(c, t) for c, t in ERROR_LEGEND)
    return (f"<div class='legend'><b>Legend</b> · {swatch((0, 0, 0), 'label 0 (background)')}"
            f"{labels}<span class='sw'>… (cycled after 10)</span><br>overlay: the prediction "
            f"tinted on the image, boundaries opaque · errors: {errors}</div>")


def image_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB of an image with colour last (:func:`physeg._validate.display_rgb`)."""
    return np.round(display_rgb(image) * 255).astype(np.uint8)



def lower_is_better(metric: str) -> bool:
    return metric in ("hausdorff", "hausdorff95", "average_surface_distance")


# --------------------------------------------------------------------------- documents


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _best(table: list[dict[str, Any]], metric: str) -> set[str]:
    """Methods with the best mean (ties all count)."""
    vals = {r["method"]: r["metrics"][metric]["mean"] for r in table
            if np.isfinite(r["metrics"][metric]["mean"])}
    if not vals:
        return set()
    top = (min if lower_is_better(metric) else max)(vals.values())
    return {k for k, v in vals.items() if v == top}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _table_rows(ds: dict[str, Any], metrics: list[str]):
    """(header, rows, bold) for one dataset's metric table, shared by Markdown and HTML."""
    header = (["method", "images", "failed"] + [f"{m} ±sd" for m in metrics]
              + ["s/image (median)", "total s", "peak MB med/max"])
    best = {m: _best(ds["table"], m) for m in metrics}
    rows, bold = [], []
    for r in ds["table"]:
        cells = [r["method"] + (" (anchor)" if r["anchor"] else ""), str(r["n"]),
                 str(r["failed"])]
        flags = [False, False, False]
        for m in metrics:
            st = r["metrics"][m]
            d = 1 if lower_is_better(m) else 3
            txt = f"{_fmt(st['mean'], d)} ± {_fmt(st['std'], d)}"
            if st.get("undefined"):
                txt += f" ({st['undefined']} undef.)"
            cells.append(txt)
            flags.append(r["method"] in best[m])
        cells += [_fmt(r["seconds"]["median"], 3), _fmt(r["seconds"]["total"], 1),
                  f"{_fmt(r['peak_mb']['median'], 1)} / {_fmt(r['peak_mb']['max'], 1)}"]
        flags += [False, False, False]
        rows.append(cells)
        bold.append(flags)
    return header, rows, bold


def _rule_text(rep: dict[str, Any]) -> str:
    """The scoring rule's line (``physeg.metrics.scoring_rule``), with what ``--match``
    does, or "" for a report without one."""
    sc = rep.get("scoring") or {}
    rule = sc.get("rule", "")
    if not rule:
        return ""
    if sc.get("match"):
        return (f"{rule} (each prediction mapped to the truth's labels by the Hungarian "
                "assignment of maximum overlap before scoring)")
    return f"{rule} (labels as they are; --match scores Hungarian-matched labels)"


def _markdown(rep: dict[str, Any]) -> str:
    metrics = rep["metrics"]
    legend_done = False  # the legend once, above the first gallery
    lines = [f"# {rep['title']}", "",
             f"Created {rep['created']} · command `{rep['command']}` · "
             f"{rep['machine'].get('cpus')} CPUs · {rep['machine'].get('executor', '')}", ""]
    rule = _rule_text(rep)
    if rule:
        lines += [f"**{rule}**", ""]
    if rep["kind"] == "bench":
        lines += ["Anchors are the classical baselines. Best mean per metric in bold.", ""]
    for ds in rep["datasets"]:
        lines += [f"## {ds['name']}", "", f"`{ds['path']}` · {ds['n_images']} images", ""]
        header, rows, bold = _table_rows(ds, metrics)
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for cells, flags in zip(rows, bold, strict=True):
            lines.append("| " + " | ".join(f"**{c}**" if f else c
                                           for c, f in zip(cells, flags, strict=True)) + " |")
        lines.append("")
        for g in ds["gallery"]:
            if not g["items"]:
                continue
            if not legend_done:
                lines += [_legend_markdown(), ""]
                legend_done = True
            lines += [f"### {ds['name']} · {g['method']}: worst {len(g['items'])} by "
                      f"{rep['primary']}", ""]
            for it in g["items"]:
                pics = " ".join(f"![{p['caption']}]({p['src']})" for p in it["panels"])
                err = f" — failed: {it['error']}" if it["status"] != "done" else ""
                lines.append(f"- `{it['id']}` {rep['primary']}={_fmt(it['score'])}{err}  ")
                lines.append(f"  {pics}")
            lines.append("")
    lines += ["## Run", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rep["versions"].items()]
    if rep.get("params"):
        lines += ["", "| method | parameters |", "|---|---|"]
        for k, v in rep["params"].items():
            lines.append(f"| {k} | {', '.join(f'{a}={b}' for a, b in v.items()) or '—'} |")
    if rep.get("seed") is not None:
        lines += ["", f"Seed: {rep['seed']}."]
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1600px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px}.meta{color:#666;font-size:12px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;
text-align:right;white-space:nowrap}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
tr.anchor td{background:#fafaf0}td.best{font-weight:700;background:#e8f4e8}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:4px;padding:6px;background:#fff}
.card .id{font-size:12px;margin-bottom:4px}.card .bad{color:#b00}
.panels{display:flex;gap:4px}.panel{text-align:center;font-size:11px;color:#555}
.panel img{display:block;max-width:160px;max-height:160px;image-rendering:pixelated;
border:1px solid #eee}
#render-check{color:#999;font-size:11px}
.legend{font-size:12px;margin:4px 0 10px}.sw{margin-right:10px;white-space:nowrap}
.sw i{display:inline-block;width:10px;height:10px;margin-right:3px;border:1px solid #999;
vertical-align:middle}
"""

_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0, bad = [];
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
    else { bad.push(imgs[i].getAttribute('src')); }
  }
  var el = document.getElementById('render-check');
  el.setAttribute('data-images-ok', String(ok));
  el.setAttribute('data-images-broken', String(bad.length));
  el.setAttribute('data-tables', String(document.querySelectorAll('table').length));
  el.textContent = 'page check: ' + ok + ' images loaded, ' + bad.length + ' broken'
    + (bad.length ? ' (' + bad.slice(0, 5).join(', ') + ')' : '');
});
"""


def _html(rep: dict[str, Any]) -> str:
    e = html.escape
    metrics = rep["metrics"]
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>{e(rep['title'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>{e(rep['title'])}</h1>",
           f"<div class='meta'>created {e(rep['created'])} · <code>{e(rep['command'])}</code>"
           f" · {rep['machine'].get('cpus')} CPUs · {e(str(rep['machine'].get('executor', '')))}"
           "</div>"]
    rule = _rule_text(rep)
    if rule:
        out.append(f"<p class='rule'><b>{e(rule)}</b></p>")
    if rep["kind"] == "bench":
        out.append("<p class='meta'>Anchors (classical baselines) are listed first; the best "
                   "mean per metric is highlighted. Time is the segment call alone; memory is "
                   "the tracemalloc peak of that call (a lower bound).</p>")
    out.append("<h2 id='results'>Results</h2>")
    for ds in rep["datasets"]:
        header, rows, bold = _table_rows(ds, metrics)
        out.append(f"<h3>{e(ds['name'])} <span class='meta'>{e(ds['path'])} · "
                   f"{ds['n_images']} images</span></h3>")
        out.append(f"<table class='metrics' data-dataset='{e(ds['name'])}'><thead><tr>"
                   + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
        for r, cells, flags in zip(ds["table"], rows, bold, strict=True):
            cls = " class='anchor'" if r["anchor"] else ""
            out.append(f"<tr{cls}>" + "".join(
                f"<td class='best'>{e(c)}</td>" if f else f"<td>{e(c)}</td>"
                for c, f in zip(cells, flags, strict=True)) + "</tr>")
        out.append("</tbody></table>")
    out.append("<h2 id='galleries'>Galleries (worst first)</h2>")
    if any(g["items"] for ds in rep["datasets"] for g in ds["gallery"]):
        out.append(_legend_html())
    for ds in rep["datasets"]:
        for g in ds["gallery"]:
            if not g["items"]:
                continue
            out.append(f"<h3>{e(ds['name'])} · {e(g['method'])} <span class='meta'>worst "
                       f"{len(g['items'])} by {e(rep['primary'])}</span></h3>")
            out.append("<div class='gallery'>")
            for it in g["items"]:
                status = ("" if it["status"] == "done"
                          else f" <span class='bad'>failed: {e(str(it['error']))}</span>")
                out.append(f"<div class='card'><div class='id'><b>{e(str(it['id']))}</b> "
                           f"{e(rep['primary'])}={_fmt(it['score'])}{status}</div>"
                           "<div class='panels'>")
                for p in it["panels"]:
                    out.append(f"<div class='panel'><img src='{e(p['src'])}' "
                               f"alt='{e(p['caption'])} {e(str(it['id']))}' loading='eager'>"
                               f"{e(p['caption'])}</div>")
                out.append("</div></div>")
            out.append("</div>")
    out.append("<h2 id='run'>Run: versions and parameters</h2>")
    out.append("<table class='versions'><thead><tr><th>package</th><th>version</th></tr>"
               "</thead><tbody>" + "".join(f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>"
                                           for k, v in rep["versions"].items())
               + "</tbody></table>")
    if rep.get("params"):
        out.append("<table class='params'><thead><tr><th>method</th><th>parameters</th></tr>"
                   "</thead><tbody>")
        for k, v in rep["params"].items():
            txt = ", ".join(f"{a}={b}" for a, b in v.items()) or "—"
            out.append(f"<tr><td>{e(k)}</td><td style='text-align:left'>{e(txt)}</td></tr>")
        out.append("</tbody></table>")
    if rep.get("seed") is not None:
        out.append(f"<p class='meta'>seed {rep['seed']}; wall time "
                   f"{_fmt(rep.get('wall_seconds'), 1)} s</p>")
    out.append("<p id='render-check'>page check pending</p>")
    out.append(f"<script>{_CHECK_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def render(report: dict[str, Any], outdir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``index.html`` for a report dict.

    The Markdown and the HTML are both rendered from this one dict (the JSON's content), so
    the three files always agree.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rep = _jsonable(report)
    paths = {"json": outdir / "report.json", "md": outdir / "report.md",
             "html": outdir / "index.html"}
    atomic_write_bytes(paths["json"], json.dumps(rep, indent=1, allow_nan=False).encode())
    view = json.loads(json.dumps(rep), parse_constant=None)
    _restore_nan(view)
    atomic_write_bytes(paths["md"], _markdown(view).encode())
    atomic_write_bytes(paths["html"], _html(view).encode())
    return paths


def _restore_nan(obj: Any) -> None:
    """JSON nulls in statistic slots back to NaN, so the renderers print '–'."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if v is None and k in ("mean", "std", "median", "max", "total", "score"):
                obj[k] = float("nan")
            else:
                _restore_nan(v)
    elif isinstance(obj, list):
        for v in obj:
            _restore_nan(v)
