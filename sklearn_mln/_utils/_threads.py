"""Torch's intra-op thread count for a block of work, restored after it.

The nets trained here are small: on a busy machine torch's threads wait on each other and a
fit at torch's default thread count can be many times slower than at one thread; and the
thread count changes how reductions are split, so the last bits of a result depend on it.
The library therefore picks the threads of the work it runs (:func:`torch_threads`) and
leaves the caller's setting as it found it.
"""

from __future__ import annotations

import contextlib
import os

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
#: every sample) a net's step is bound by per-op overhead, and more threads never help:
#: any MLP on small data (benchmarks/results/threads/)
SMALL_WORK_FLOPS = 5e7


def flops_per_sample(module, X_sample) -> float | None:
    """Forward FLOPs of ``module`` on one sample (``None`` if they cannot be counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(X_sample[:1])
        return float(counter.get_total_flops())
    except Exception:  # any module torch cannot count: no estimate
        return None


def _running_processes() -> int | None:
    """Other processes running right now (Linux: each one's state in ``/proc``), or None.

    Processes, not threads: the caller's own idle thread pools spin for a while after a
    parallel region and would count as load if threads were counted.
    """
    me, running = os.getpid(), 0
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return None
    for pid in entries:
        if int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone, or not ours to read
            continue
        end = stat.rfind(b")")
        running += stat[end + 2 : end + 3] == b"R"
    return running


def idle_cores() -> int:
    """Cores no other process is running on right now (at least 1); where processes cannot
    be listed, the one-minute load average stands in."""
    cores = os.cpu_count() or 1
    others = _running_processes()
    if others is None:
        others = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(cores, cores - others))


def threads_for_training(module, X_sample, n_samples: int, batch_size: int) -> int:
    """Torch threads for training ``module``: one for an overhead-bound step, else the
    caller's setting capped at the cores that are idle now (threads that share a busy core
    wait on each other: a small CNN's fit was several times slower at two threads than at
    one with both cores busy, and faster at two with both idle)."""
    flops = flops_per_sample(module, X_sample)
    samples_per_step = n_samples if batch_size == -1 else min(batch_size, n_samples)
    if flops is not None and 3 * flops * samples_per_step < SMALL_WORK_FLOPS:
        return 1
    return max(1, min(torch.get_num_threads(), idle_cores()))
