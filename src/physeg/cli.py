"""The ``physeg`` command line: segment, fit, evaluate, bench, methods, demo.

Every command is generated from the method registry (``physeg.methods()``): names,
parameters, types, defaults and ranges all come from the :class:`physeg.api.Param` schemas.
Heavy modules (numpy, scikit-image, the method families) are imported inside the commands,
so ``physeg --help`` stays fast.

Choices made where the brief left room
--------------------------------------
* **Colour.** ``--channel-axis auto`` (default) treats a 2D file with 3 or 4 values per pixel
  (and a 4D TIFF) as colour, channels last; ``none`` forces grey/volume reading; an integer
  names the axis. The policy (alpha dropped; grey ``mean(R, G, B)`` on the dtype's range for
  methods without colour support) is :mod:`physeg._validate`'s, applied by :mod:`physeg.batch`.
* **Outputs, safety, seeds** are :mod:`physeg.batch`'s: ``OUTDIR/<stem>.png`` (volumes
  ``.tif``), overlays in ``OUTDIR/overlays/`` (so ``physeg evaluate OUTDIR GT`` pairs only
  label files); atomic, never over an input; ``--seed`` is the ``rng`` of every file.
* **Errors.** One bad file is reported on stderr and skipped; the summary line counts
  failures and the exit status is 1 if any file failed. Usage errors (unknown method, a
  ``--param`` that is not ``KEY=VALUE`` or fails the method's schema, no inputs) exit with 2
  before any work starts; they are found by :func:`physeg.batch.plan_batch`.
* **Evaluate.** ``--average auto`` scores foreground against foreground (``"binary"``) when
  both label images hold at most one non-zero label (masks stored as 0/1 or 0/255 compare
  correctly), and the mean over labels otherwise. With several ground-truth files per image
  (BSDS500 annotators ``<stem>_<k>``), each metric is averaged over the annotators. The
  "mean" row averages the per-image values, ignoring NaN (e.g. Hausdorff of an empty mask);
  ``--json`` writes undefined scores as ``null`` (strict JSON).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

__all__ = ["app", "main", "parse_params"]

app = typer.Typer(
    name="physeg",
    help="Image segmentation by mathematical models (kinetic particles, heat flows, "
    "variational networks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help renderer costs ~0.25 s of imports per call, which
    # would break the 0.5 s target for `physeg --help`.
    rich_markup_mode=None,
)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- helpers


def parse_params(items: list[str] | None) -> dict[str, str]:
    """Turn ``["k=v", ...]`` into ``{"k": "v"}``; raise ``ValueError`` on a malformed item."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE (e.g. --param classes=3); got {item!r}.")
        if key in out:
            raise ValueError(f"--param {key} is given twice ({out[key]!r} and {value!r}).")
        out[key] = value.strip()
    return out


def _bad(msg: str) -> typer.Exit:
    _console(stderr=True).print(f"[red]error:[/red] {msg}", markup=True)
    return typer.Exit(code=2)


# --------------------------------------------------------------------------- segment


@app.command()
def segment(
    inputs: Annotated[List[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder for label images.")],
    method: Annotated[
        Optional[str],
        typer.Option(
            "--method", "-m", help="Registered method (see `physeg methods`); default otsu."
        ),
    ] = None,
    param: Annotated[
        Optional[List[str]],
        typer.Option("--param", "-p", help="Method parameter KEY=VALUE (repeatable)."),
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option("--model", help="Saved model (from `physeg fit`); replaces --method."),
    ] = None,
    overlay: Annotated[
        bool, typer.Option("--overlay", help="Also write overlays/<stem>.png.")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
    channel_axis: Annotated[
        str,
        typer.Option("--channel-axis", help="Colour axis: auto (RGB/RGBA last), none, or an int."),
    ] = "auto",
    suffix: Annotated[
        str, typer.Option("--suffix", help="Label file type: .png or .tif.")
    ] = ".png",
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed passed to the method.")
    ] = 0,
    scheduler: Annotated[
        Optional[str],
        typer.Option("--scheduler", help="Dask scheduler address (tcp://host:port) to run on "
                     "a dask cluster instead of --jobs (needs the dask extra)."),
    ] = None,
    log: Annotated[
        Optional[Path],
        typer.Option("--log", help="JSON-lines log file (default OUTDIR/physeg-log.jsonl)."),
    ] = None,
) -> None:
    """Segment images into label files named after the inputs.

    Resumable: outputs that exist and were made from the same input bytes and parameters are
    skipped, so re-running an interrupted command loses nothing. Every file's status,
    parameters, timing and error go to a JSON-lines log.
    """
    import numpy as np  # noqa: F401 - warm import before the progress bar

    from .batch import plan_batch, run_plan

    try:  # every usage error is found here, by batch's one validation, before any work
        plan = plan_batch(
            inputs, out_dir, method=method, params=parse_params(param),
            model=str(model) if model is not None else None, rng=seed, overwrite=overwrite,
            overlay=overlay, log=log if log is not None else True, suffix=suffix,
            channel_axis=channel_axis,
        )
    except (ValueError, KeyError, TypeError, FileNotFoundError) as exc:
        raise _bad(str(exc)) from None
    n_files = len(plan.jobs)

    if scheduler is not None and jobs > 1:
        raise _bad("--scheduler and --jobs are alternatives; give one of them.")
    err = _console(stderr=True)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def report(rec: dict[str, Any]) -> None:
        if rec["status"] == "failed":
            error = rec["error"]
            err.print(f"[red]failed[/red] {rec['input']}: {error['type']}: {error['message']}",
                      markup=True)

    progress = Progress(
        TextColumn("segment"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=n_files < 2,
    )
    executor = client = None
    try:
        if scheduler is not None:
            from ._optional import require

            distributed = require("distributed", feature="--scheduler")
            try:
                client = distributed.Client(scheduler, timeout="10s")
            except OSError as exc:
                raise _bad(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
            executor = client
        elif jobs > 1 and n_files > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            executor = ProcessPoolExecutor(max_workers=min(jobs, n_files),
                                           mp_context=mp.get_context("spawn"))
        with progress:
            task = progress.add_task("segment", total=n_files)

            def on_record(rec: dict[str, Any]) -> None:
                report(rec)
                progress.advance(task)

            result = run_plan(plan, executor=executor, progress=on_record)
    finally:
        if client is not None:
            client.close()
        elif executor is not None:
            executor.shutdown(cancel_futures=True)
    n_fail = result.count("failed")
    n_skip = result.count("skipped")
    n_ok = len(result.records) - n_fail
    out = _console()
    out.print(
        f"segmented {n_ok} of {len(result.records)} file(s) with {plan.method} -> {out_dir}"
        + (f" ({n_skip} already done, skipped)" if n_skip else "")
        + (f"; {n_fail} failed" if n_fail else "")
        + (f"; log {result.log}" if result.log else "")
    )
    if n_fail:
        raise typer.Exit(code=1)


# --------------------------------------------------------------------------- fit


@app.command()
def fit(
    method: Annotated[
        str, typer.Option("--method", "-m", help="Method to fit (see `physeg methods`).")
    ],
    images: Annotated[Path, typer.Option("--images", help="Folder of training images.")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of masks, paired by file stem.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.json or .pt).")],
    param: Annotated[
        Optional[List[str]], typer.Option("--param", "-p", help="KEY=VALUE (repeatable).")
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="Use the first N pairs.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model file.")
    ] = False,
) -> None:
    """Fit a method's parameters (or train its network) on images with masks."""
    from .api import fit as api_fit
    from .api import get_method
    from .data.datasets import pair_folders
    from .io import read_image, read_mask

    try:
        params = parse_params(param)
        m = get_method(method)
        if m.fit_func is None:
            from .api import methods as all_methods

            fitters = sorted(k for k, v in all_methods().items() if v.fit_func is not None)
            raise ValueError(
                f"method {m.name!r} has nothing to fit; use `physeg segment --method {m.name}`."
                f" Methods that fit: {fitters}."
            )
        m.validate(params, for_fit=True)
        if out.exists() and not overwrite:
            raise ValueError(f"model file {out} already exists; use --overwrite to replace it.")
        samples = pair_folders(images, masks)
    except (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError) as exc:
        raise _bad(str(exc)) from None
    if limit is not None:
        samples = samples[:limit]
    try:
        imgs = [read_image(s.image_path) for s in samples]
        gts = [read_mask(s.mask_paths[0]) for s in samples]
    except (ValueError, OSError) as exc:
        raise _bad(f"cannot read the training data: {exc}") from None
    t0 = time.perf_counter()
    try:
        model = api_fit(m.name, imgs, gts, **params)
    except (ValueError, TypeError) as exc:
        raise _bad(f"fitting failed: {exc}") from None
    path = model.save(out)
    _console().print(
        f"fitted {m.name} on {len(samples)} image(s) in {time.perf_counter() - t0:.1f} s -> {path}"
    )


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


def _evaluate_pair(pred, gts, names, average, options):
    import numpy as np

    from .metrics import evaluate as mevaluate

    vals: dict[str, list[float]] = {n: [] for n in names}
    used = average
    for gt in gts:
        if average == "auto":
            n_p = np.unique(pred[pred > 0]).size
            n_g = np.unique(gt[gt > 0]).size
            used = "binary" if n_p <= 1 and n_g <= 1 else "mean"
        res = mevaluate(pred, gt, names, average=used, **options)
        for n in names:
            vals[n].append(float(res[n]))
    return {n: float(np.mean(v)) for n, v in vals.items()}, used


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
) -> None:
    """Score predicted label images against ground truth (per image and mean)."""
    import numpy as np

    from .data.datasets import pair_folders
    from .io import read_mask
    from .metrics import resolve_metric

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
    for s in samples:
        try:
            p = read_mask(s.image_path)
            gts = [read_mask(q) for q in s.mask_paths]
            vals, used = _evaluate_pair(p, gts, names, average, {})
        except (ValueError, TypeError, OSError) as exc:
            n_fail += 1
            err.print(f"[red]failed[/red] {s.image_path}: {exc}", markup=True)
            continue
        rows.append(
            {
                "id": s.id,
                "pred": str(s.image_path),
                "gt": [str(q) for q in s.mask_paths],
                "average": used,
                **vals,
            }
        )
    mean = {}
    for n in names:
        v = np.array([r[n] for r in rows], dtype=float)
        mean[n] = float(np.nanmean(v)) if v.size and np.isfinite(v).any() else float("nan")
    if report is not None and rows:
        from .report import evaluation_report

        evaluation_report(rows, report, pred_dir=pred, gt_dir=gt, metrics=names, failed=n_fail)
        _console(stderr=True).print(f"report: {report / 'index.html'}")
    if as_json:
        doc = {
            "pred": str(pred),
            "gt": str(gt),
            "n": len(rows),
            "failed": n_fail,
            "metrics": names,
            "mean": mean,
            "images": rows,
        }
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
) -> None:
    """Run methods over annotated folders; write index.html, report.md and report.json."""
    from .report import run_bench

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
        if jobs > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            executor = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
        with progress:
            task = progress.add_task("bench", total=None)

            def on_record(rec: dict[str, Any]) -> None:
                if rec["status"] != "done":
                    err.print(f"[red]failed[/red] {rec['dataset']}/{rec['id']} "
                              f"{rec['method']}: {rec['error']}", markup=True)
                progress.advance(task)

            rep = run_bench([str(d) for d in datasets], names, out_dir, params=overrides,
                            metrics=metric_names, limit=limit, gallery=gallery,
                            executor=executor, rng=seed, progress=on_record)
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
    out.print(f"report: {Path(out_dir) / 'index.html'}")
    if any(r["status"] != "done" for r in rep["records"]):
        raise typer.Exit(code=1)


# --------------------------------------------------------------------------- methods


@app.command("methods")
def list_methods(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List the registered methods and their parameters."""
    from .api import methods as all_methods

    table_map = all_methods()
    if as_json:
        doc = {}
        for name, m in table_map.items():
            doc[name] = {
                "summary": m.summary,
                "supports_3d": m.supports_3d,
                "supports_multichannel": m.supports_multichannel,
                "fits": m.fit_func is not None,
                "needs_labels": m.needs_labels,
                "params": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "default": p.default,
                        "low": p.low,
                        "high": p.high,
                        "choices": list(p.choices) if p.choices else None,
                        "help": p.help,
                    }
                    for p in m.params + m.fit_params
                ],
            }
        typer.echo(json.dumps(doc, indent=2))
        return
    from rich.table import Table

    out = _console()
    for name, m in table_map.items():
        flags = [
            f
            for f, on in (
                ("2D/3D" if m.supports_3d else "2D", True),
                ("colour", m.supports_multichannel),
                ("fit", m.fit_func is not None),
                ("needs labels", m.needs_labels),
            )
            if on
        ]
        t = Table(title=f"{name} — {m.summary} [{', '.join(flags)}]", title_justify="left")
        for col in ("parameter", "type", "default", "range", "help"):
            t.add_column(col)
        for p in m.params:
            t.add_row(p.name, p.type, repr(p.default), p.describe(), p.help)
        for p in m.fit_params:
            t.add_row(p.name + " (fit)", p.type, repr(p.default), p.describe(), p.help)
        out.print(t)


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-out"),
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed for the noise and the methods.")
    ] = 0,
) -> None:
    """Segment a noisy synthetic image and a small real image; print the scores."""
    from .demo import run_demo

    try:
        result = run_demo(out_dir, seed=seed, console=_console())
    except (ValueError, OSError) as exc:
        raise _bad(str(exc)) from None
    if not result.get("ok", True):
        raise typer.Exit(code=1)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``physeg``)."""
    app(args=argv, prog_name="physeg")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
