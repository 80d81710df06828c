"""Where independent runs go: here, local worker processes, or a Dask cluster. The caller
(``hwsim explore``'s driver with its optimizer and store, ``hwsim train --search``'s branch
and bound) stays in this process; a backend only runs ``fn(*args)`` somewhere and hands
back results as they complete.

``dask`` connects to ``--scheduler tcp://host:8786`` (a real cluster), or starts a
``distributed.LocalCluster`` of ``jobs`` worker processes when no scheduler is given.
``initializer(*initargs)`` runs once in each local worker process (and here, inline) to set
up per-process state such as a predictor whose op costs are cached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from simulator.errors import HwsimError

__all__ = ["Backend", "make_backend", "BACKENDS"]

BACKENDS = ("local", "dask")


class Backend:
    """Runs tasks here and now (``jobs=1``, local)."""

    name = "inline"
    slots = 1

    def __init__(self, initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()):
        if initializer is not None:
            initializer(*initargs)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        f: Future = Future()
        try:
            f.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(e)
        return f

    def wait_any(self, futures: Iterable[Any]) -> tuple[set[Any], set[Any]]:
        futures = set(futures)
        return {f for f in futures if f.done()}, {f for f in futures if not f.done()}

    def close(self) -> None:
        pass


class LocalProcesses(Backend):
    """``jobs`` worker processes on this machine."""

    name = "local"

    def __init__(self, jobs: int, initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()):
        import multiprocessing as mp

        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        self.slots = jobs
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context(method),
                                         initializer=initializer, initargs=initargs)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._pool.submit(fn, *args)

    def wait_any(self, futures: Iterable[Any]) -> tuple[set[Any], set[Any]]:
        done, pending = wait(set(futures), return_when=FIRST_COMPLETED)
        return set(done), set(pending)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class DaskCluster(Backend):
    """A Dask scheduler's workers (``tcp://host:port``), or a LocalCluster of ``jobs``
    worker processes."""

    name = "dask"

    def __init__(self, jobs: int, scheduler: str | None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise HwsimError("--backend dask needs dask.distributed: pip install "
                             "'hwsim[explore]' (or dask[distributed])") from None
        self._cluster = None
        try:
            if scheduler:
                self._client = Client(scheduler, timeout="10s")
            else:
                self._cluster = LocalCluster(n_workers=jobs, threads_per_worker=1,
                                             processes=True, dashboard_address=None)
                self._client = Client(self._cluster)
        except (OSError, TimeoutError) as e:
            raise HwsimError(f"--scheduler {scheduler}: cannot reach the Dask scheduler "
                             f"({e.__class__.__name__}: {e})") from None
        n = len(self._client.scheduler_info().get("workers", {}))
        self.slots = max(1, n)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._client.submit(fn, *args, pure=False)

    def wait_any(self, futures: Iterable[Any]) -> tuple[set[Any], set[Any]]:
        from distributed import wait as dwait

        done, pending = dwait(list(futures), return_when="FIRST_COMPLETED")
        return set(done), set(pending)

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_backend(name: str, jobs: int, scheduler: str | None = None, *,
                 initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()) -> Backend:
    """The backend ``name`` with ``jobs`` workers (local processes, or a local Dask
    cluster's); ``scheduler``: a running Dask scheduler's address instead. ``initializer``
    (local only) sets up each worker process."""
    if name not in BACKENDS:
        raise HwsimError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise HwsimError(f"--jobs must be a positive integer, got {jobs!r}")
    if scheduler is not None and name != "dask":
        raise HwsimError("--scheduler names a Dask scheduler: it needs --backend dask")
    if name == "dask":
        if initializer is not None:
            raise HwsimError("a Dask backend runs self-contained tasks: no initializer")
        return DaskCluster(jobs, scheduler)
    if jobs > 1:
        return LocalProcesses(jobs, initializer, initargs)
    return Backend(initializer, initargs)
