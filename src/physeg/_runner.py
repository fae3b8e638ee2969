"""Run one pure function over many tasks, serially or on any executor; shared by batch and report.

:func:`run_tasks` submits ``work(task)`` for every task to a
:class:`concurrent.futures.Executor` (or calls it in this process when there is none) and hands
each result to a callback as it arrives, in completion order. A task whose worker dies (a
killed process, a lost dask worker) gives the record built by ``on_crash`` instead of an
exception, so one lost task never ends a run. :func:`as_executor` accepts ``None``, any
``Executor`` or a ``distributed.Client`` (whose ``get_executor()`` is used).

Choices
-------
* **Completion order, input index.** Results are delivered as they finish (a progress bar and
  an append-only log see them at once), each with its task's index, so callers can restore
  input order.
* **Interrupt.** On any exception in the callback (e.g. ``KeyboardInterrupt``), the futures not
  yet started are cancelled; the executor itself belongs to the caller and is not shut down.
* **Process pools** (:func:`process_pool`): ``spawn`` workers, at most the usable cores
  (:func:`usable_cores`; more only adds memory and switching). Each worker ignores SIGINT
  (Ctrl-C stops the parent, which lets running files finish) and exits as soon as its parent
  is gone (a thread watches ``os.getppid()``), so ``kill -9`` of the parent leaves no
  orphaned worker, and with them the resource tracker exits too.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import platform
import signal
import threading
import time
from typing import Any, Callable, Sequence, TypeVar

__all__ = ["as_executor", "process_pool", "run_tasks", "usable_cores", "versions"]

Task = TypeVar("Task")


def as_executor(executor: Any) -> cf.Executor | None:
    """``None`` (serial), a :class:`concurrent.futures.Executor`, or a client's executor."""
    if executor is None or isinstance(executor, cf.Executor):
        return executor
    if hasattr(executor, "get_executor"):  # distributed.Client
        return executor.get_executor(pure=False)
    raise TypeError(
        "executor must be None (serial), a concurrent.futures.Executor (e.g. "
        f"ProcessPoolExecutor) or a distributed.Client; got {type(executor).__name__}."
    )


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def process_pool(jobs: int) -> cf.ProcessPoolExecutor:
    """A ``spawn`` process pool of ``jobs`` workers that never outlive this process.

    ``jobs`` is used as given; callers cap it at :func:`usable_cores` and say so.
    """
    import multiprocessing as mp

    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                  initializer=_worker_start, initargs=(os.getpid(),))


def _worker_start(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True,
                     name="physeg-parent-watch").start()


def _exit_with_parent(parent: int, every: float = 0.2) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)  # the parent is gone: nobody waits for this worker's results


def run_tasks(
    work: Callable[[Task], dict[str, Any]],
    tasks: Sequence[tuple[int, Task]],
    executor: cf.Executor | None,
    on_result: Callable[[int, dict[str, Any]], None],
    on_crash: Callable[[Task, BaseException], dict[str, Any]],
) -> None:
    """Call ``on_result(index, work(task))`` for every ``(index, task)``, as results arrive.

    Parameters
    ----------
    work : callable
        Pure, picklable function of one task returning a JSON-able record; it should not raise.
    tasks : sequence of (int, task)
        Tasks with the index the caller wants back.
    executor : concurrent.futures.Executor or None
        Where ``work`` runs (from :func:`as_executor`); None calls it here, in order.
    on_result : callable
        Receives each index and record.
    on_crash : callable
        Builds the record of a task whose worker raised (the worker died).
    """
    if executor is None:
        for index, task in tasks:
            on_result(index, work(task))
        return
    futures = {executor.submit(work, task): (index, task) for index, task in tasks}
    try:
        for fut in cf.as_completed(futures):
            index, task = futures[fut]
            try:
                record = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (e.g. killed)
                record = on_crash(task, exc)
            on_result(index, record)
    finally:
        for fut in futures:
            fut.cancel()


def versions() -> dict[str, str]:
    """Versions of physeg, Python and the main dependencies (for logs and reports)."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("physeg", "numpy", "scipy", "scikit-image", "dask", "distributed", "torch"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out
