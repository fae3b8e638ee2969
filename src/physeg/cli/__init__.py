"""The ``physeg`` command line: segment, fit, evaluate, bench, methods, demo.

One typer ``app`` (:mod:`._app`, with the shared helpers); the commands live in
:mod:`._segment` (segment, fit), :mod:`._score` (evaluate, bench) and here (methods, demo).

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
  failures and the exit status is 1 if any file failed. Usage and environment errors
  (unknown method, a ``--param`` that is not ``KEY=VALUE`` or fails the method's schema, no
  inputs, an output folder that is a file or cannot be written, a bad ``--log``) exit with 2
  before any work starts, in one line, never a traceback. Disk full stops the run (exit 1)
  with a summary of what was done; Ctrl-C stops it after the running files (exit 130).
  Everything the user typed (paths, values) is printed as is, never as rich markup.
* **Workers.** ``--jobs`` is capped at the usable cores (with a one-line warning).
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
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _score, _segment  # noqa: F401 - registers segment, fit, evaluate, bench
from ._app import _bad, _console, _tagged, app, parse_params

__all__ = ["app", "main", "parse_params"]

# --------------------------------------------------------------------------- methods


@app.command("methods")
def list_methods(
    name: Annotated[
        Optional[str], typer.Argument(help="Show only this method (e.g. heat).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List the registered methods and their parameters (or one method: physeg methods NAME)."""
    from ..api import get_method
    from ..api import methods as all_methods

    table_map = all_methods()
    if name is not None:
        try:
            m = get_method(name)
        except ValueError as exc:
            raise _bad(str(exc)) from None
        table_map = {m.name: m}
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
            t.add_column(col, overflow="fold")  # a narrow terminal folds, never cuts ("ots…")
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
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the files of an earlier demo.")
    ] = False,
) -> None:
    """Segment a noisy synthetic image and a small real image; print the scores."""
    from ..demo import run_demo

    try:
        result = run_demo(out_dir, seed=seed, console=_console(), overwrite=overwrite)
    except (ValueError, OSError) as exc:
        raise _bad(str(exc)) from None
    if not result.get("ok", True):
        raise typer.Exit(code=1)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``physeg``).

    An environment error no command foresaw (an ``OSError``) still ends in one line and exit
    status 2, never a traceback.
    """
    try:
        app(args=argv, prog_name="physeg")
    except OSError as exc:
        _console(stderr=True).print(_tagged("error:", "red", str(exc)))
        sys.exit(2)
