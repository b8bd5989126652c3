"""Torch's intra-op thread count for a block of work, restored after it.

The nets trained here are small: on a busy machine torch's threads wait on each other and a
fit at torch's default thread count can be many times slower than at one thread; and the
thread count changes how reductions are split, so the last bits of a result depend on it.
The library therefore picks the threads of the work it runs (:func:`torch_threads`) and
leaves the caller's setting as it found it.
"""

from __future__ import annotations

import contextlib

import torch

#: threads of every evaluation of a population of classifiers (in the caller's process and
#: in every worker): results then do not depend on the caller's threads or on ``n_jobs``,
#: and parallelism comes from ``n_jobs`` processes, which on small nets pays better
EVALUATION_THREADS = 1


@contextlib.contextmanager
def torch_threads(n_threads: int | None):
    """Run the block at ``n_threads`` torch threads (``None``: as it is), then restore."""
    previous = torch.get_num_threads()
    if n_threads is not None and n_threads != previous:
        torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


#: below this many floating-point operations per training step (forward and backward of
#: every sample), one thread trains a net at least as fast as several on an idle machine
#: and many times faster on a busy one (benchmarks/results/threads/): a 10-shot small CNN
#: on 28 x 28 images or any MLP on small data is below it, 50 images per class of
#: Fashion-MNIST for the CNN above it
SMALL_WORK_FLOPS = 4e8


def flops_per_sample(module, X_sample) -> float | None:
    """Forward FLOPs of ``module`` on one sample (``None`` if they cannot be counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(X_sample[:1])
        return float(counter.get_total_flops())
    except Exception:  # any module torch cannot count: no estimate
        return None


def threads_for_training(module, X_sample, n_samples: int, batch_size: int) -> int | None:
    """One thread for a small net's training step, ``None`` (the caller's setting) else."""
    flops = flops_per_sample(module, X_sample)
    if flops is None:
        return None
    per_step = 3 * flops * (n_samples if batch_size == -1 else min(batch_size, n_samples))
    return 1 if per_step < SMALL_WORK_FLOPS else None
