"""``physeg segment`` and ``physeg fit``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from ._app import (
    _MAX_PIXELS_HELP,
    _USAGE_ERRORS,
    _bad,
    _console,
    _jobs,
    _max_pixels,
    _tagged,
    app,
    parse_params,
)

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
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=0, help=_MAX_PIXELS_HELP)
    ] = 100_000_000,
) -> None:
    """Segment images into label files named after the inputs.

    Resumable: outputs that exist and were made from the same input bytes and parameters are
    skipped, so re-running an interrupted command loses nothing. Every file's status,
    parameters, timing and error go to a JSON-lines log.
    """
    import numpy as np  # noqa: F401 - warm import before the progress bar

    from .. import io as pio
    from ..batch import plan_batch, run_plan

    try:  # every usage error is found here, by batch's one validation, before any work
        plan = plan_batch(
            inputs, out_dir, method=method, params=parse_params(param),
            model=str(model) if model is not None else None, rng=seed, overwrite=overwrite,
            overlay=overlay, log=log if log is not None else True, suffix=suffix,
            channel_axis=channel_axis, max_pixels=_max_pixels(max_pixels),
        )
    except _USAGE_ERRORS as exc:
        raise _bad(str(exc)) from None
    n_files = len(plan.jobs)

    if scheduler is not None and jobs > 1:
        raise _bad("--scheduler and --jobs are alternatives; give one of them.")
    err = _console(stderr=True)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def report(rec: dict[str, Any]) -> None:
        if rec["status"] == "failed":
            error = rec["error"]
            err.print(_tagged("failed", "red",
                              f"{rec['input']}: {error['type']}: {error['message']}"))

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
        pio.prepare_folder(plan.outdir)  # before the progress bar: a bad folder is one line
        if scheduler is not None:
            from .._optional import require

            distributed = require("distributed", feature="--scheduler")
            try:
                client = distributed.Client(scheduler, timeout="10s")
            except OSError as exc:
                raise _bad(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
            executor = client
        elif jobs > 1 and n_files > 1 and (workers := _jobs(jobs, n_files)) > 1:
            from .._runner import process_pool

            executor = process_pool(workers)
        seen: list[dict[str, Any]] = []
        with progress:
            task = progress.add_task("segment", total=n_files)

            def on_record(rec: dict[str, Any]) -> None:
                seen.append(rec)
                report(rec)
                progress.advance(task)

            result = run_plan(plan, executor=executor, progress=on_record)
    except pio.OutputError as exc:  # the output folder or the log cannot be written
        raise _bad(str(exc)) from None
    except KeyboardInterrupt:
        err.print(_tagged("interrupted:", "red", f"{len(seen)} of {n_files} file(s) finished; "
                          "re-run the same command to resume (finished files are skipped)."))
        raise typer.Exit(code=130) from None
    finally:
        if client is not None:
            client.close()
        elif executor is not None:
            executor.shutdown(cancel_futures=True)
    n_fail = result.count("failed")
    n_skip = result.count("skipped")
    n_ok = len(result.records) - n_fail
    out = _console()
    out.print(  # segmented = this run's work; a resumed run's done files are counted apart
        f"segmented {n_ok - n_skip} of {n_files} file(s) with {plan.method} -> {out_dir}"
        + (f" ({n_skip} already done)" if n_skip else "")
        + (f"; {n_fail} failed" if n_fail else "")
        + (f"; log {result.log}" if result.log else "")
        + ("" if result.log_complete else " (its summary line could not be written)")
    )
    if result.stopped:
        err.print(_tagged("stopped:", "red", f"{result.stopped.rstrip('.')}; {n_files - n_ok} "
                          f"of {n_files} file(s) not done; re-run the same command to resume."))
    if n_fail or result.stopped:
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
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=0, help=_MAX_PIXELS_HELP)
    ] = 100_000_000,
    scribbles: Annotated[
        bool, typer.Option("--scribbles", help="The masks are strokes: 0 = unlabelled, "
                           "stroke value v = label v-1 (1 = background, 2 = object, ...); "
                           "same as --param unlabelled=0 (kinetic: also likelihood=learned).")
    ] = False,
) -> None:
    """Fit a method's parameters (or train its network) on images with masks.

    The model file goes through the same checks as every output: never one of the training
    images or masks (even with --overwrite), never an existing file without --overwrite.
    """
    from .. import io as pio
    from ..api import fit as api_fit
    from ..api import get_method
    from ..data.datasets import pair_folders

    try:
        params = parse_params(param)
        m = get_method(method)
        if m.fit_func is None:
            from ..api import methods as all_methods

            fitters = sorted(k for k, v in all_methods().items() if v.fit_func is not None)
            raise ValueError(
                f"method {m.name!r} has nothing to fit; use `physeg segment --method {m.name}`."
                f" Methods that fit: {fitters}."
            )
        if scribbles:
            params = _scribble_params(m, params)
        m.validate(params, for_fit=True)
        samples = pair_folders(images, masks)
        inputs = [p for s in samples for p in (s.image_path, *s.mask_paths)]
        pio.check_writable(out, overwrite=overwrite, protect=inputs)  # before the work
    except _USAGE_ERRORS as exc:
        raise _bad(str(exc).replace(" (or pass strict=False to skip them)", "")) from None
    if limit is not None:
        samples = samples[:limit]
    limit_px = _max_pixels(max_pixels)
    try:
        imgs = [pio.read_image(s.image_path, max_pixels=limit_px) for s in samples]
        gts = [pio.read_mask(s.mask_paths[0], max_pixels=limit_px) for s in samples]
    except (ValueError, OSError) as exc:
        raise _bad(f"cannot read the training data: {exc}") from None
    t0 = time.perf_counter()
    err = _console(stderr=True)
    try:
        with _fit_progress(err, m.name) as progress:
            model = api_fit(m.name, imgs, gts, progress=progress, **params)
        path = _save_model(model, out, overwrite=overwrite, protect=inputs)
    except (ValueError, TypeError, OSError) as exc:
        raise _bad(f"fitting failed: {exc}") from None
    seconds = time.perf_counter() - t0
    out_console = _console()
    out_console.print(f"fitted {m.name} on {len(samples)} image(s) in {seconds:.1f} s -> {path}")
    if "unlabelled" in params:
        out_console.print(stroke_agreement(model, imgs, gts, params["unlabelled"]))
        return
    try:
        line, poor = training_score(model, imgs, gts)
    except (ValueError, TypeError) as exc:  # the model is saved; only its score failed
        err.print(_tagged("warning:", "yellow", f"could not score the fit on its training "
                          f"images: {exc}"))
        return
    out_console.print(line)
    if poor:
        err.print(_tagged("warning:", "yellow", poor))


def _scribble_params(m: Any, params: dict) -> dict:
    """``--scribbles``: ``unlabelled=0`` (and ``likelihood=learned`` where that is a choice)."""
    names = {p.name for p in m.fit_params}
    if "unlabelled" not in names:
        from ..api import methods as all_methods

        able = sorted(k for k, v in all_methods().items()
                      if "unlabelled" in {p.name for p in v.fit_params})
        raise ValueError(f"method {m.name!r} does not learn from scribbles; methods that do: "
                         f"{able}.")
    params = {"unlabelled": "0", **params}
    if "likelihood" in names:
        params.setdefault("likelihood", "learned")
    return params


def stroke_agreement(model: Any, images: list, strokes: list, unlabelled: Any) -> str:
    """How many stroke pixels the fitted model labels as their class (label k = the k-th
    stroke value other than ``unlabelled``)."""
    import numpy as np

    from .._validate import channel_axis_from_mask

    values = np.asarray(model.info.get("class_values", []))
    agree = total = 0
    for img, gt in zip(images, strokes, strict=True):
        gt = np.asarray(gt)
        pred = model.predict(img, channel_axis=channel_axis_from_mask(img, gt))
        drawn = gt != int(unlabelled)
        cls = np.searchsorted(values, gt[drawn])
        agree += int(np.sum(pred[drawn] == cls))
        total += int(drawn.sum())
    n = len(images)
    return (f"fit {model.method}: labels agree with {100.0 * agree / max(total, 1):.1f} % of the "
            f"{total} stroke pixels on the {n} training image{'s' if n != 1 else ''}")


#: A training Dice below this is reported as poor: the model does not even reproduce its own
#: masks, so new images will not do better.
POOR_TRAINING_DICE = 0.5


def _fit_progress(err: Any, name: str):
    """A rich bar driven by ``physeg.fit(progress=)``: totals and messages from the fit;
    a fit that reports nothing shows the elapsed time only."""
    import contextlib

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    @contextlib.contextmanager
    def bar():
        # "done/total" only once the fit has said its total: never "0/?"
        progress = Progress(TextColumn(f"fit {name}"), BarColumn(), TextColumn("{task.fields[n]}"),
                            TextColumn("{task.description}"), TimeElapsedColumn(), console=err)
        with progress:
            task = progress.add_task("", total=None, n="")

            def update(done: int, total: int | None, message: str) -> None:
                progress.update(task, completed=done, total=total, description=message,
                                n=f"{done}/{total}" if total else f"{done}")

            yield update

    return bar()


def training_score(model: Any, images: list, masks: list) -> tuple[str, str | None]:
    """``model.predict`` on its training images, scored by ``physeg.metrics.score_labels``.

    Returns the summary line (``"fit kinetic: dice loss 0.907, Dice 0.09 on the 2 training
    images"``) and a warning when the mean Dice is below :data:`POOR_TRAINING_DICE` (else
    None). Works for every method: it asks only ``predict``.
    """
    import numpy as np

    from .._validate import channel_axis_from_mask
    from ..metrics import score_labels

    dices = []
    for img, gt in zip(images, masks, strict=True):
        pred = model.predict(img, channel_axis=channel_axis_from_mask(img, gt))
        dices.append(score_labels(pred, gt, "dice")["scores"]["dice"])
    dice = float(np.nanmean(dices)) if not np.all(np.isnan(dices)) else float("nan")
    loss = _fit_loss(model)
    n = len(images)
    where = f"on the {n} training image{'s' if n != 1 else ''}"
    line = f"fit {model.method}: {loss + ', ' if loss else ''}Dice {dice:.2f} {where}"
    poor = None
    if not dice >= POOR_TRAINING_DICE:
        poor = (f"the fitted model scores Dice {dice:.2f} {where}, below "
                f"{POOR_TRAINING_DICE}: it does not reproduce its own masks, so new images "
                "will not do better. Check that label 1 of the masks is the object, or try "
                "more iterations (--param), more images or another method.")
    return line, poor


def _fit_loss(model: Any) -> str:
    """The fit's own final loss, where it records one ("dice loss 0.907"); else ""."""
    import numpy as np

    info = getattr(model, "info", {}) or {}
    if isinstance(info.get("loss_value"), (int, float)):
        name = info.get("loss")
        return f"{name + ' ' if isinstance(name, str) else ''}loss {info['loss_value']:.3f}"
    history = info.get("history")
    if isinstance(history, dict) and isinstance(history.get("loss"), list) and history["loss"]:
        # the networks: mean training loss of the last 10 iterations (one batch is noisy)
        return f"training loss {float(np.mean(history['loss'][-10:])):.3f}"
    return ""


def _save_model(model: Any, out: Path, *, overwrite: bool, protect: list[Path]) -> Path:
    """``model.save`` serialises (to a private folder); :mod:`physeg.io` writes the file with
    the checks every output gets (never an input, no clobber without ``overwrite``)."""
    import tempfile

    from ..io import atomic_write_bytes

    with tempfile.TemporaryDirectory(prefix="physeg-model-") as tmp:
        data = Path(model.save(Path(tmp) / ("model" + out.suffix))).read_bytes()
    return atomic_write_bytes(out, data, overwrite=overwrite, protect=protect)
