"""Fixtures shared by the test files: the digits data, tiny evolution settings, a clean env.

The data fixtures are loaded once per session and shared: tests must not modify them in
place (copy first).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import torch

from sklearn_mln.datasets import load_digits_images

#: MLNEvolver settings that evolve in about a second on digits: use ``{**TINY_EVOLVER, ...}``
TINY_EVOLVER = MappingProxyType(
    {
        "n_shots": 3,
        "n_tasks": 2,
        "popsize": 4,
        "n_generations": 2,
        "inner_steps": 10,
        "n_reeval_tasks": 2,
        "hidden_sizes": (4,),
        "random_state": 0,
    }
)
#: the same for ``python -m sklearn_mln evolve`` (tiny held-out comparison, one worker)
TINY_EVOLVE_ARGV = (
    "--n-shots", "3", "--n-tasks", "2", "--popsize", "4", "--n-generations", "2",
    "--inner-steps", "10", "--n-reeval-tasks", "2", "--hidden-sizes", "4",
    "--eval-tasks", "3", "--n-jobs", "1", "--pool-size", "300", "--quiet",
)  # fmt: skip


@pytest.fixture(scope="session")
def digits():
    """Digits as images, ``X`` (1797, 1, 8, 8) float32 in [0, 1] and ``y`` (1797,) int64."""
    return load_digits_images(return_X_y=True)


@pytest.fixture(scope="session")
def digits_flat(digits):
    """Digits with flattened pixels, ``X`` (1797, 64)."""
    X, y = digits
    return X.reshape(len(X), -1), y


@pytest.fixture(scope="session")
def tiny_evolver():
    """:data:`TINY_EVOLVER`, read-only: ``MLNEvolver(**{**tiny_evolver, "n_shots": 2})``."""
    return TINY_EVOLVER


@pytest.fixture(scope="session")
def tiny_evolve_argv():
    """:data:`TINY_EVOLVE_ARGV` as a list, to append to ``["evolve", ...]``."""
    return list(TINY_EVOLVE_ARGV)


@pytest.fixture
def no_data_env(monkeypatch):
    """No ``SKLEARN_MLN_DATA``: the loaders search only what the test gives them."""
    monkeypatch.delenv("SKLEARN_MLN_DATA", raising=False)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, then the previous setting back (tiny ops are faster)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def rng():
    """A fresh seeded generator for test data."""
    return np.random.default_rng(0)


def generations_in(checkpoint: Path) -> int:
    """How many generations a checkpoint file holds."""
    with np.load(checkpoint, allow_pickle=False) as archive:
        return len(json.loads(str(archive["header"]))["history"])


def sigkill_after_generations(command: list[str], env: dict, checkpoint: Path, n: int) -> int:
    """Start ``command``, SIGKILL it once ``checkpoint`` holds ``n`` generations; its status."""
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not (checkpoint.exists() and generations_in(checkpoint) >= n):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    return child.returncode


#: the start of a child script whose evolution runs slower with the same numbers, so that a
#: test can kill it between generations
SLOWED_EVOLUTION = """
import sys, time
import sklearn_mln._evolver as evolver

evaluate = evolver.evaluate_population
def slowed(*args, **kwargs):  # slower generations, same numbers
    time.sleep(0.4)
    return evaluate(*args, **kwargs)
evolver.evaluate_population = slowed
"""
