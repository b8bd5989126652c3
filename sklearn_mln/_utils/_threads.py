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
