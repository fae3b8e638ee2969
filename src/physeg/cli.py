"""The ``physeg`` command line: segment, fit, evaluate, methods, demo.

Every command is generated from the method registry (``physeg.methods()``): names,
parameters, types, defaults and ranges all come from the :class:`physeg.api.Param` schemas.
Heavy modules (numpy, scikit-image, the method families) are imported inside the commands,
so ``physeg --help`` stays fast.

Choices made where the brief left room
--------------------------------------
* **Colour.** ``--channel-axis auto`` (default) treats a 2D file with 3 or 4 values per pixel
  (and a 4D TIFF) as colour with channels last. An alpha channel is dropped (it carries no
  intensity). A method that declares ``supports_multichannel`` gets the colour image with
  ``channel_axis=-1``; any other method gets the grey image ``mean(R, G, B)`` (equal weights,
  as the baselines do) computed on intensities mapped to [0, 1] by the dtype's range (uint8 /
  255, uint16 / 65535; floats unchanged), which is a fixed, documented, data-independent
  scale. ``--channel-axis none`` forces grey/volume reading; an integer names the axis.
* **Outputs.** Labels go to ``OUTDIR/<stem>.png`` (``--suffix .tif`` for TIFF; volumes always
  get ``.tif``). Overlays go to ``OUTDIR/overlays/<stem>.png``, a sub-folder so that
  ``physeg evaluate OUTDIR GT`` still pairs only label files. Two inputs with the same stem
  would write the same output; the later ones are reported as failed instead.
* **Safety.** Every write is atomic (:mod:`physeg.io`). An existing output is a per-file error
  unless ``--overwrite``, checked *before* segmenting. Inputs are never written, even with
  ``--overwrite``: each write is protected against every input that resolves to the same
  path or inode.
* **Seeds.** ``--seed`` (default 0) is passed as ``rng`` to every file, so a batch gives the
  same labels whatever the order or the number of jobs.
* **Errors.** One bad file is reported on stderr and skipped; the summary line counts
  failures and the exit status is 1 if any file failed. Usage errors (unknown method, a
  ``--param`` that is not ``KEY=VALUE`` or fails the method's schema, no inputs) exit with 2
  before any work starts.
* **Evaluate.** ``--average auto`` scores foreground against foreground (``"binary"``) when
  both label images hold at most one non-zero label (masks stored as 0/1 or 0/255 compare
  correctly), and the mean over labels otherwise. With several ground-truth files per image
  (BSDS500 annotators ``<stem>_<k>``), each metric is averaged over the annotators. The
  "mean" row averages the per-image values, ignoring NaN (e.g. Hausdorff of an empty mask);
  ``--json`` writes undefined scores as ``null`` (strict JSON).
* **Demo.** The real image is scikit-image's ``coins`` (bundled with scikit-image, no
  download; public domain per its README). It has no pixel ground truth, so the demo does not
  invent one: it reports the number of coin-sized objects found against the 24 coins the
  image shows (4 rows of 6, counted by eye). Dice is printed only for the synthetic image,
  whose mask is exact.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

__all__ = ["app", "main", "segment_file", "parse_params"]

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


def _parse_channel_axis(text: str) -> int | str | None:
    t = str(text).strip().lower()
    if t in ("auto", ""):
        return "auto"
    if t in ("none", "grey", "gray"):
        return None
    try:
        return int(t)
    except ValueError:
        raise ValueError(
            f"--channel-axis expects auto, none or an integer axis; got {text!r}."
        ) from None


def _colour_axis(image, channel_axis: int | str | None) -> int | None:
    """Which axis of a read image holds colour (None = grey or plain volume)."""
    if channel_axis == "auto":
        if (image.ndim == 3 and image.shape[-1] in (3, 4)) or image.ndim == 4:
            return image.ndim - 1
        return None
    if channel_axis is None:
        return None
    if not -image.ndim <= int(channel_axis) < image.ndim:
        raise ValueError(
            f"--channel-axis {channel_axis} is out of range for an image of shape {image.shape}."
        )
    return int(channel_axis) % image.ndim


def prepare_image(image, supports_colour: bool, channel_axis: int | str | None = "auto"):
    """Return ``(array, channel_axis)`` ready for ``physeg.segment`` (see module notes)."""
    import numpy as np

    from ._validate import to_float01

    ax = _colour_axis(image, channel_axis)
    if ax is None:
        return image, None
    arr = np.moveaxis(image, ax, -1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if supports_colour:
        return arr, -1
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        arr = to_float01(arr.astype(np.uint8) if arr.dtype == bool else arr)
    return arr.astype(np.float32).mean(axis=-1), None


_MODEL_CACHE: dict[str, Any] = {}


def _load_model(path: str):
    if path not in _MODEL_CACHE:
        from .api import load

        _MODEL_CACHE[path] = load(path)
    return _MODEL_CACHE[path]


def _accepts_rng(func) -> bool:
    import inspect

    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return "rng" in sig.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    )


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def overlay_path_for(input_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Overlay PNG for one input: ``out_dir/overlays/<stem>.png``."""
    return Path(out_dir) / "overlays" / (Path(input_path).stem + ".png")


def segment_file(
    path: str,
    out_dir: str,
    method: str,
    params: dict[str, Any],
    *,
    model: str | None = None,
    overlay: bool = False,
    overwrite: bool = False,
    channel_axis: int | str | None = "auto",
    suffix: str = ".png",
    seed: int | None = 0,
    protect: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Read, segment and write one file; never raises for a bad file.

    A pure, picklable function (module level, plain arguments), so it runs the same serially
    or in a ``ProcessPoolExecutor``.

    Parameters
    ----------
    path : str
        Input image.
    out_dir : str
        Output folder (created when needed).
    method : str
        Registered method; ignored when ``model`` is given (the model's method is used).
    params : dict
        Method parameters (strings are converted by the method's schema).
    model : str, optional
        A saved model file (``physeg.load``).
    overlay : bool
        Also write ``out_dir/overlays/<stem>.png`` (uint8 RGB).
    overwrite : bool
        Replace existing outputs; otherwise an existing output is an error for this file.
    channel_axis : "auto", None or int
        See the module notes.
    suffix : str
        ``.png`` or ``.tif`` for 2D labels.
    seed : int or None
        ``rng`` passed to the method.
    protect : tuple of str
        Files that must never be written (inputs).

    Returns
    -------
    dict
        ``input``, ``output``, ``overlay`` (paths or None), ``status`` ("ok" / "failed"),
        ``error`` (message or None), ``labels`` (number of distinct labels), ``seconds``.
    """
    t0 = time.perf_counter()
    rec: dict[str, Any] = {
        "input": str(path),
        "output": None,
        "overlay": None,
        "status": "failed",
        "error": None,
        "labels": None,
        "seconds": None,
    }
    try:
        import numpy as np

        from . import io as pio
        from .api import get_method, segment

        protect_all = (str(path),) + tuple(protect)
        out = pio.output_path_for(path, out_dir, suffix)
        ov = overlay_path_for(path, out_dir) if overlay else None
        for target in (out, ov):
            if target is None:
                continue
            for q in protect_all:
                if _same_path(target, Path(q)):
                    raise pio.ProtectedPathError(
                        f"refusing to write {target}: it is the input file {q}; physeg never "
                        "writes over an input, even with --overwrite. Choose another -o folder."
                    )
            if target.exists() and not overwrite:
                raise FileExistsError(
                    f"output {target} already exists; use --overwrite to replace it."
                )
        image = pio.read_image(path)
        if model is not None:
            mdl = _load_model(model)
            m = get_method(mdl.method)
            arr, cax = prepare_image(image, m.supports_multichannel, channel_axis)
            kwargs = dict(params)
            if seed is not None and _accepts_rng(mdl.predict):
                kwargs["rng"] = seed
            labels = mdl.predict(arr, channel_axis=cax, **kwargs)
        else:
            m = get_method(method)
            arr, cax = prepare_image(image, m.supports_multichannel, channel_axis)
            labels = segment(arr, method=m.name, channel_axis=cax, rng=seed, **params)
        labels = np.asarray(labels)
        written = pio.write_labels(out, labels, overwrite=overwrite, protect=protect_all)
        rec["output"] = str(written)
        if ov is not None:
            from .overlay import overlay as make_overlay

            shown = image
            if _colour_axis(image, channel_axis) is not None:
                shown = np.moveaxis(image, _colour_axis(image, channel_axis), -1)
            pio.write_image(
                ov, make_overlay(shown, labels), overwrite=overwrite, protect=protect_all
            )
            rec["overlay"] = str(ov)
        rec["labels"] = int(np.unique(labels).size)
        rec["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a batch
        rec["error"] = f"{type(exc).__name__}: {exc}"
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


def _protect_map(files: list[Path]) -> tuple[dict[str, str], dict[tuple[int, int], str]]:
    """Inputs by resolved path and by (device, inode), to protect them from any write."""
    resolved: dict[str, str] = {}
    by_inode: dict[tuple[int, int], str] = {}
    for f in files:
        try:
            resolved[str(f.resolve())] = str(f)
            st = f.stat()
            by_inode[(st.st_dev, st.st_ino)] = str(f)
        except OSError:
            continue
    return resolved, by_inode


def _protect_for(
    target: Path, resolved: dict[str, str], by_inode: dict[tuple[int, int], str]
) -> list[str]:
    """The inputs that ``target`` would hit (same resolved path or same inode)."""
    out = []
    try:
        key = str(target.resolve())
    except OSError:
        return out
    if key in resolved:
        out.append(resolved[key])
    try:
        st = target.stat()
    except OSError:
        return out
    if (st.st_dev, st.st_ino) in by_inode:
        out.append(by_inode[(st.st_dev, st.st_ino)])
    return out


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
) -> None:
    """Segment images into label files named after the inputs."""
    import numpy as np  # noqa: F401 - warm import before the progress bar

    from . import io as pio
    from .api import get_method
    from .datasets import find_images

    try:
        params = parse_params(param)
        cax = _parse_channel_axis(channel_axis)
        if model is not None:
            if not model.is_file():
                raise ValueError(f"model file {str(model)!r} does not exist.")
            mdl = _load_model(str(model))
            if method is not None and get_method(method).name != mdl.method:
                raise ValueError(
                    f"--method {method} conflicts with the model, which was fitted for "
                    f"{mdl.method!r}; leave out --method."
                )
            m = get_method(mdl.method)
        else:
            m = get_method(method or "otsu")
            if m.func is None:
                raise ValueError(
                    f"method {m.name!r} needs a fitted model: run `physeg fit --method "
                    f"{m.name} ...` and pass --model FILE."
                )
        m.validate(params)  # schema errors now, not once per file
        if (
            suffix.lower() not in pio.LABEL_SUFFIXES
            and "." + suffix.lower() not in pio.LABEL_SUFFIXES
        ):
            raise ValueError(f"--suffix must be one of {', '.join(pio.LABEL_SUFFIXES)}.")
        suffix = suffix if suffix.startswith(".") else "." + suffix
        files = find_images(inputs)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as exc:
        raise _bad(str(exc)) from None

    resolved, by_inode = _protect_map(files)
    jobs_list = []
    records: list[dict[str, Any] | None] = [None] * len(files)
    seen: dict[str, str] = {}
    for i, f in enumerate(files):
        try:
            target = pio.output_path_for(f, out_dir, suffix)
        except Exception:  # noqa: BLE001 - e.g. unreadable TIFF header: segment_file reports it
            target = Path(out_dir) / (f.stem + suffix)
        key = str(target.resolve())
        if key in seen:
            records[i] = {
                "input": str(f),
                "output": None,
                "overlay": None,
                "status": "failed",
                "error": f"ValueError: writes the same output {target} as {seen[key]}; "
                "segment inputs with the same name into different folders.",
                "labels": None,
                "seconds": 0.0,
            }
            continue
        seen[key] = str(f)
        protect = _protect_for(target, resolved, by_inode)
        if overlay:
            protect += _protect_for(overlay_path_for(f, out_dir), resolved, by_inode)
        kwargs = dict(
            model=str(model) if model is not None else None,
            overlay=overlay,
            overwrite=overwrite,
            channel_axis=cax,
            suffix=suffix,
            seed=seed,
            protect=tuple(protect),
        )
        jobs_list.append((i, (str(f), str(out_dir), m.name, params), kwargs))

    err = _console(stderr=True)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def report(rec: dict[str, Any]) -> None:
        if rec["status"] != "ok":
            err.print(f"[red]failed[/red] {rec['input']}: {rec['error']}", markup=True)

    for rec in records:
        if rec is not None:
            report(rec)
    progress = Progress(
        TextColumn("segment"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=len(jobs_list) < 2,
    )
    with progress:
        task = progress.add_task("segment", total=len(jobs_list))
        if jobs > 1 and len(jobs_list) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(jobs_list)), mp_context=ctx) as ex:
                futs = {ex.submit(segment_file, *a, **kw): i for i, a, kw in jobs_list}
                for fut in as_completed(futs):
                    i = futs[fut]
                    try:
                        rec = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died
                        rec = {
                            "input": str(files[i]),
                            "status": "failed",
                            "error": f"{type(exc).__name__}: {exc}",
                            "output": None,
                        }
                    records[i] = rec
                    report(rec)
                    progress.advance(task)
        else:
            for i, a, kw in jobs_list:
                rec = segment_file(*a, **kw)
                records[i] = rec
                report(rec)
                progress.advance(task)
    n_fail = sum(1 for r in records if r is None or r["status"] != "ok")
    n_ok = len(records) - n_fail
    out = _console()
    out.print(
        f"segmented {n_ok} of {len(records)} file(s) with {m.name} -> {out_dir}"
        + (f"; {n_fail} failed" if n_fail else "")
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
    from .datasets import pair_folders
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
) -> None:
    """Score predicted label images against ground truth (per image and mean)."""
    import numpy as np

    from .datasets import pair_folders
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
