"""``physeg evaluate`` and ``physeg bench``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from ._app import _bad, _console, _jobs, _tagged, app

# --------------------------------------------------------------------------- evaluate


def _nan_to_none(obj: Any) -> Any:
    """NaN / inf -> None so that ``--json`` output is strict JSON (null = undefined score)."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and not _finite(obj):
        return None
    return obj


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _hint(dice_mean: float, inverted_mean: float | None, where: str = "",
          param: str = "--param foreground=dark") -> str | None:
    """The one-line hint when the inverted prediction scores far higher, else None."""
    from ..metrics import inversion_hint

    if not inversion_hint(dice_mean, inverted_mean):
        return None
    return (f"hint: {where}the inverted labels score much higher (dice {inverted_mean:.3f} vs "
            f"{dice_mean:.3f}); the method probably called the background the object: "
            f"segment again with {param}, or score with --match.")


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Argument(help="Folder of predicted label images.")],
    gt: Annotated[Path, typer.Argument(help="Folder of ground-truth masks (paired by stem).")],
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics",
            help="Comma-separated metric names (physeg.metrics.METRICS and aliases, e.g. hd95).",
        ),
    ] = "dice,iou,precision,recall,pixel_accuracy",
    average: Annotated[
        str, typer.Option("--average", help="auto | binary | mean (see the module notes).")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    partial: Annotated[
        bool,
        typer.Option("--partial", help="Score the pairs found; ignore files without a partner."),
    ] = False,
    report: Annotated[
        Optional[Path],
        typer.Option("--report", help="Also write an HTML/Markdown/JSON report (tables and a "
                     "worst-first gallery) to this folder."),
    ] = None,
    match: Annotated[
        bool,
        typer.Option("--match", help="Map predicted labels to the truth's by Hungarian "
                     "matching (max overlap) before scoring, for unsupervised multi-label "
                     "output. Default: labels as they are (label 1 vs mask>0 for binary "
                     "masks)."),
    ] = False,
) -> None:
    """Score predicted label images against ground truth (per image and mean).

    The rule is physeg.metrics.score_labels, the same as physeg bench's.
    """
    import numpy as np

    from ..data.datasets import pair_folders
    from ..io import read_mask
    from ..metrics import resolve_metric, score_labels, scoring_rule

    try:
        names = [resolve_metric(n.strip()) for n in metrics.split(",") if n.strip()]
        if not names:
            raise ValueError("--metrics is empty; name at least one metric, e.g. dice.")
        if average not in ("auto", "binary", "mean"):
            raise ValueError(f"--average must be auto, binary or mean; got {average!r}.")
        samples = pair_folders(pred, gt, strict=not partial)
        if not samples:
            raise ValueError(f"no prediction in {pred} has a ground-truth partner in {gt}.")
    except (ValueError, KeyError, FileNotFoundError, NotADirectoryError) as exc:
        msg = str(exc)
        if not partial and "cannot pair" in msg:
            msg = msg.replace("pass strict=False to skip them", "pass --partial to skip them")
        raise _bad(msg) from None

    rows = []
    n_fail = 0
    err = _console(stderr=True)
    inverted: list[float | None] = []
    plain: list[float | None] = []
    binary: set[bool] = set()
    for s in samples:
        try:
            p = read_mask(s.image_path)
            gts = [read_mask(q) for q in s.mask_paths]
            res = score_labels(p, gts, names, match=match, average=average)
        except (ValueError, TypeError, OSError) as exc:
            n_fail += 1
            err.print(_tagged("failed", "red", f"{s.image_path}: {exc}"))
            continue
        inverted.append(res["inverted_dice"])
        plain.append(res["object_dice"])
        binary.add(res["binary"])
        rows.append(
            {
                "id": s.id,
                "pred": str(s.image_path),
                "gt": [str(q) for q in s.mask_paths],
                "average": res["average"],
                **res["scores"],
                **({"inverted_dice": res["inverted_dice"]}
                   if res["inverted_dice"] is not None else {}),
            }
        )
    rule = scoring_rule(match=match, average=average,
                        binary=binary.pop() if len(binary) == 1 else (None if binary else True))
    mean = {}
    for n in names:
        v = np.array([r[n] for r in rows], dtype=float)
        mean[n] = float(np.nanmean(v)) if v.size and np.isfinite(v).any() else float("nan")
    hint = None
    if rows and all(x is not None for x in inverted):
        hint = _hint(float(np.mean(plain)), float(np.mean(inverted)))
    if report is not None and rows:
        from ..report import evaluation_report

        evaluation_report(rows, report, pred_dir=pred, gt_dir=gt, metrics=names, failed=n_fail,
                          match=match, rule=rule)
        _console(stderr=True).print(f"report: {report / 'index.html'}")
    if as_json:
        doc = {
            "pred": str(pred),
            "gt": str(gt),
            "n": len(rows),
            "failed": n_fail,
            "metrics": names,
            "scoring": {"match": match, "rule": rule},
            "mean": mean,
            "images": rows,
        }
        if hint:
            doc["hint"] = hint
        typer.echo(json.dumps(_nan_to_none(doc), indent=2, allow_nan=False))
    else:
        from rich.table import Table

        table = Table(title=f"{pred} vs {gt}")
        table.add_column("image")
        for n in names:
            table.add_column(n, justify="right")
        for r in rows:
            table.add_row(r["id"], *(f"{r[n]:.4f}" for n in names))
        table.add_section()
        table.add_row(f"mean ({len(rows)})", *(f"{mean[n]:.4f}" for n in names), style="bold")
        out = _console()
        out.print(table)
        out.print(
            "mean "
            + ", ".join(f"{n}={mean[n]:.4f}" for n in names)
            + f" over {len(rows)} image(s)"
            + (f"; {n_fail} failed" if n_fail else "")
        )
        out.print(rule, markup=False, highlight=False)
    if hint:
        err.print(hint, markup=False, highlight=False)
    if n_fail:
        raise typer.Exit(code=1)


# --------------------------------------------------------------------------- bench


@app.command()
def bench(
    datasets: Annotated[
        List[Path], typer.Argument(help="Annotated folders (manifest.csv or images/ + masks/).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated registered methods.")
    ] = "otsu,heat,chan-vese",
    param: Annotated[
        Optional[List[str]],
        typer.Option("--param", "-p", help="METHOD.KEY=VALUE parameter override (repeatable)."),
    ] = None,
    metrics: Annotated[
        str, typer.Option("--metrics", help="Comma-separated metrics; the first sorts galleries.")
    ] = "dice,iou,boundary_f1,hd95",
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="First N images of each dataset.")
    ] = None,
    gallery: Annotated[
        int, typer.Option("--gallery", min=0, help="Worst images shown per dataset and method.")
    ] = 8,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = 1,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed passed to every method.")] = 0,
    match: Annotated[
        bool,
        typer.Option("--match", help="Map predicted labels to the truth's by Hungarian "
                     "matching before scoring (as physeg evaluate --match). Default: labels "
                     "as they are (label 1 vs mask>0 for binary masks)."),
    ] = False,
) -> None:
    """Run methods over annotated folders; write index.html, report.md and report.json."""
    from ..report import run_bench

    try:
        names = [m.strip() for m in methods.split(",") if m.strip()]
        overrides: dict[str, dict[str, str]] = {}
        for item in param or []:
            key, sep, value = item.partition("=")
            meth, dot, name = key.strip().partition(".")
            if not sep or not dot or not meth or not name:
                raise ValueError(
                    f"--param expects METHOD.KEY=VALUE (e.g. --param heat.lam=8); got {item!r}."
                )
            overrides.setdefault(meth, {})[name] = value.strip()
        metric_names = [m.strip() for m in metrics.split(",") if m.strip()]
        if not metric_names:
            raise ValueError("--metrics is empty; name at least one metric, e.g. dice.")
    except ValueError as exc:
        raise _bad(str(exc)) from None
    err = _console(stderr=True)
    executor = None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err)
    try:
        if (workers := _jobs(jobs)) > 1:
            from .._runner import process_pool

            executor = process_pool(workers)
        with progress:
            task = progress.add_task("bench", total=None)

            def on_record(rec: dict[str, Any]) -> None:
                if rec["status"] != "done":
                    err.print(_tagged("failed", "red", f"{rec['dataset']}/{rec['id']} "
                                      f"{rec['method']}: {rec['error']}"))
                progress.advance(task)

            rep = run_bench([str(d) for d in datasets], names, out_dir, params=overrides,
                            metrics=metric_names, limit=limit, gallery=gallery,
                            executor=executor, rng=seed, progress=on_record, match=match,
                            on_start=lambda n: progress.update(task, total=n))  # not "33/?"
    except (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError) as exc:
        raise _bad(str(exc)) from None
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    out = _console()
    primary = rep["primary"]
    for ds in rep["datasets"]:
        for row in ds["table"]:
            st = row["metrics"][primary]
            out.print(f"{ds['name']:>16} {row['method']:>12}{' (anchor)' if row['anchor'] else ''}"
                      f"  {primary}={st['mean']:.4f}  s/image={row['seconds']['median']:.3f}"
                      + (f"  failed={row['failed']}" if row["failed"] else ""))
    out.print(rep["scoring"]["rule"], markup=False, highlight=False)
    for ds in rep["datasets"]:
        for row in ds["table"]:
            dice_mean = row.get("object_dice")
            hint = _hint(dice_mean if dice_mean is not None else math.nan,
                         row.get("inverted_dice"), where=f"{ds['name']} {row['method']}: ",
                         param=f"--param {row['method']}.foreground=dark")
            if hint:
                err.print(hint, markup=False, highlight=False)
    out.print(f"report: {Path(out_dir) / 'index.html'}")
    if any(r["status"] != "done" for r in rep["records"]):
        raise typer.Exit(code=1)
