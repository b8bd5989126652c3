"""Evaluate a population of candidate losses over joblib workers.

The population is cut into one chunk per worker; each chunk trains all its
(candidate, task) classifiers together (see :mod:`sklearn_mln._inner`). Workers cap
torch's threads so that ``n_jobs`` workers share the cores instead of oversubscribing.
Everything a worker needs travels as arguments (no global state), so the same code runs
under any joblib backend, Dask included.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs

from ._inner import (
    InnerConfig,
    TaskBatch,
    members_per_pass,
    mln_population_loss,
    score_population,
    score_reference,
)
from ._meta_loss import MetaLossNetwork, MetaLossSpec


def threads_per_worker(n_workers: int) -> int:
    """Torch threads each of ``n_workers`` workers may use on this machine."""
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


def evaluate_chunk(
    thetas: np.ndarray,
    spec: MetaLossSpec,
    config: InnerConfig,
    batch: TaskBatch,
    X_val: np.ndarray,
    n_threads: int,
    vectorized: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(len(thetas), n_tasks)`` and failure flags of candidate parameter vectors."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            if vectorized:
                # candidates per pass so the autograd graph stays inside the memory budget
                step = max(1, members_per_pass(config, batch) // batch.n_tasks)
                results = [
                    score_population(
                        mln_population_loss(group, spec, batch.n_tasks, config.device),
                        len(group),
                        config,
                        batch,
                        X_val,
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
    n_threads = threads_per_worker(n_workers)
    parallel = parallel if parallel is not None else Parallel(n_jobs=n_workers)
    results = parallel(
        delayed(evaluate_chunk)(thetas[c], spec, config, batch, X_val, n_threads, vectorized)
        for c in chunks
    )
    accuracy = np.concatenate([r[0] for r in results])
    failed = np.concatenate([r[1] for r in results])
    return accuracy, failed
