"""The typer app and what every command shares: consoles without markup, errors, --jobs."""

from __future__ import annotations

import typer

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
    # markup off: paths and values the user typed ("[bold]x.png", "a[/b") print as they are
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False)


def _tagged(tag: str, style: str, text: str):
    from rich.text import Text

    return Text.assemble((tag, style), " ", text)


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
    _console(stderr=True).print(_tagged("error:", "red", msg))
    return typer.Exit(code=2)


def _jobs(jobs: int, n_tasks: int | None = None) -> int:
    """``--jobs`` capped at the usable cores (and the number of tasks), with a warning."""
    from .._runner import usable_cores

    cores = usable_cores()
    if jobs > cores:
        _console(stderr=True).print(_tagged("warning:", "yellow", f"--jobs {jobs} is more than "
                                            f"the {cores} usable cores; using {cores}."))
        jobs = cores
    return jobs if n_tasks is None else max(1, min(jobs, n_tasks))


def _max_pixels(value: int) -> int | None:
    return None if value == 0 else value


_USAGE_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError,
                 IsADirectoryError, FileExistsError, PermissionError)

_MAX_PIXELS_HELP = "Largest image read, in pixels (voxels); 0: no limit."
