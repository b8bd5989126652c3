"""Helpers and settings the test files share (fixtures are in conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np

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


#: the repository's root, where ``benchmarks/`` lives
REPOSITORY = Path(__file__).resolve().parents[1]


def load_script(relative_path: str):
    """A script of ``benchmarks/`` imported as a module (its ``main`` not run)."""
    path = REPOSITORY / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
import sklearn_mln._evolution._evolver as evolver

evaluate = evolver.evaluate_population
def slowed(*args, **kwargs):  # slower generations, same numbers
    time.sleep(0.4)
    return evaluate(*args, **kwargs)
evolver.evaluate_population = slowed
"""
