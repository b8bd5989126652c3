"""Evaluate a population of candidate losses over joblib workers.

The population is cut into one chunk per worker; each chunk trains all its
(candidate, task) classifiers together (see :mod:`sklearn_mln._evolution._inner`). Every
chunk runs at :data:`~sklearn_mln._utils._threads.EVALUATION_THREADS` torch threads, in a
worker or in the calling process alike (whose own setting is restored after), so the
result of a generation does not depend on ``n_jobs``, the caller's thread setting or the
backend, and ``n_jobs`` workers share the cores instead of oversubscribing them.

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
import sys

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from joblib.parallel import get_active_backend

from .._losses._meta_loss import MetaLossNetwork, MetaLossSpec
from .._utils._config import config_context, get_config
from .._utils._threads import EVALUATION_THREADS, torch_threads
from ._inner import (
    InnerConfig,
    TaskBatch,
    members_per_pass,
    mln_population_loss,
    prepare_tasks,
    score_population,
    score_reference,
)


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
    vectorized: bool,
    settings: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(len(thetas), n_tasks)`` and failure flags of candidate parameter vectors,
    at :data:`EVALUATION_THREADS` torch threads (the process's setting restored after),
    under the caller's package ``settings`` (:func:`~sklearn_mln.set_config`: a worker
    process does not share them)."""
    settings = get_config() if settings is None else settings
    with (
        torch_threads(EVALUATION_THREADS),
        torch.random.fork_rng(devices=[]),
        config_context(**settings),
    ):
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
    parallel = parallel if parallel is not None else Parallel(n_jobs=n_workers)
    results = parallel(
        delayed(evaluate_chunk)(thetas[c], spec, config, batch, X_val, vectorized, get_config())
        for c in chunks
    )
    accuracy = np.concatenate([r[0] for r in results])
    failed = np.concatenate([r[1] for r in results])
    return accuracy, failed
