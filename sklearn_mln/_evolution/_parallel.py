"""Evaluate a population of candidate losses over joblib workers.

The population is cut into one chunk per worker; each chunk trains all its
(candidate, task) classifiers together (see :mod:`sklearn_mln._evolution._inner`). Worker processes
cap torch's threads at their share of the cores (``cpu_count // n_workers``) so that
``n_jobs`` workers share the cores instead of oversubscribing. A chunk that runs in the
calling process (``n_jobs=1``, or joblib's threading backend) keeps that process's torch
thread setting: the library never changes it.

When ``n_jobs > 1`` pays: each worker trains its share of the population at the speed of
one process, so workers pay in proportion to the idle cores they find; on a machine whose
cores are already busy they add little. A generation sends the candidates, the tasks' rows,
the inner configuration and the validation set (joblib memory-maps a large one); starting
the workers is paid by the first ``fit`` only, since loky keeps its processes for later
calls. Measurements: the docs' Scaling page.

Everything a worker needs travels as arguments (no global state), so the same code runs
under any joblib backend, Dask included. Under Dask, :func:`shared_with_workers` sends the
large validation set to every worker once, and each task keeps its worker's own torch
thread setting (Dask starts workers with ``OMP_NUM_THREADS=1``; the client's core count
says nothing about theirs).
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from joblib.parallel import get_active_backend

from .._losses._meta_loss import MetaLossNetwork, MetaLossSpec
from ._inner import (
    InnerConfig,
    TaskBatch,
    members_per_pass,
    mln_population_loss,
    prepare_tasks,
    score_population,
    score_reference,
)


def threads_per_worker(n_workers: int) -> int:
    """Torch threads each of ``n_workers`` workers may use on this machine."""
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


@contextlib.contextmanager
def single_threaded_blas():
    """NumPy's and SciPy's BLAS at one thread for the block, restored after it.

    CMA-ES's eigendecomposition runs in the calling process. At the sizes evolved here
    (tens to a few hundred dimensions) one thread is as fast as several on an idle machine,
    and on a busy one OpenBLAS's threads wait on each other, many times slower. Torch's own
    threads (OpenMP) are left alone.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _active_dask_backend():
    """joblib's active Dask backend, or ``None`` (never imports Dask itself)."""
    dask_module = sys.modules.get("joblib._dask")
    backend, _ = get_active_backend()
    if dask_module is not None and isinstance(backend, dask_module.DaskDistributedBackend):
        return backend
    return None


@contextlib.contextmanager
def shared_with_workers(*arrays: np.ndarray):
    """Under joblib's Dask backend, send ``arrays`` to every worker once for the block.

    joblib then passes the workers' copies wherever these very objects are an argument.
    Without this, the Dask backend scatters a large argument anew in every ``Parallel``
    call (every generation). Other backends need nothing: loky memory-maps large arrays.
    """
    backend = _active_dask_backend()
    if backend is None:
        yield
        return
    with parallel_config(
        backend="dask",
        client=backend.client,
        scatter=list(arrays),
        wait_for_workers_timeout=backend.wait_for_workers_timeout,
        **backend.submit_kwargs,
    ):
        yield


def evaluate_chunk(
    thetas: np.ndarray,
    spec: MetaLossSpec,
    config: InnerConfig,
    batch: TaskBatch,
    X_val: np.ndarray,
    n_threads: int | None,
    vectorized: bool,
    caller_pid: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(len(thetas), n_tasks)`` and failure flags of candidate parameter vectors.

    In a worker process (any process but ``caller_pid``) torch uses ``n_threads``
    threads for the call; ``n_threads=None``, or running in the caller's own process,
    keeps the process's torch thread setting.
    """
    previous = torch.get_num_threads()
    capped = n_threads is not None and os.getpid() != caller_pid
    if capped:
        torch.set_num_threads(n_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            if vectorized:
                # the template, initial weights and memory probe serve every pass
                prepared = prepare_tasks(config, batch)
                # candidates per pass so the autograd graph stays inside the memory budget
                step = max(1, members_per_pass(config, batch, prepared) // batch.n_tasks)
                results = [
                    score_population(
                        mln_population_loss(group, spec, batch.n_tasks, config.device),
                        len(group),
                        config,
                        batch,
                        X_val,
                        prepared=prepared,
                    )
                    for group in (thetas[i : i + step] for i in range(0, len(thetas), step))
                ]
                return (
                    np.concatenate([r[0] for r in results]),
                    np.concatenate([r[1] for r in results]),
                )
            losses = [MetaLossNetwork.from_spec(spec, theta) for theta in thetas]
            return score_reference(losses, config, batch, X_val)
    finally:
        if capped:
            torch.set_num_threads(previous)


def evaluate_population(
    thetas: np.ndarray,
    spec: MetaLossSpec,
    config: InnerConfig,
    batch: TaskBatch,
    X_val: np.ndarray,
    *,
    n_jobs=None,
    vectorized: bool = True,
    parallel: Parallel | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(P, n_tasks)`` and failure flags of ``P`` candidates, over joblib workers.

    ``parallel`` lets a caller reuse one :class:`joblib.Parallel` across generations.
    """
    n_workers = min(len(thetas), effective_n_jobs(n_jobs))
    chunks = np.array_split(np.arange(len(thetas)), n_workers)
    n_threads = None if _active_dask_backend() is not None else threads_per_worker(n_workers)
    parallel = parallel if parallel is not None else Parallel(n_jobs=n_workers)
    pid = os.getpid()
    results = parallel(
        delayed(evaluate_chunk)(thetas[c], spec, config, batch, X_val, n_threads, vectorized, pid)
        for c in chunks
    )
    accuracy = np.concatenate([r[0] for r in results])
    failed = np.concatenate([r[1] for r in results])
    return accuracy, failed
