"""Fixtures shared by the test files: the digits data, tiny evolution settings, a clean env.

The data fixtures are loaded once per session and shared: tests must not modify them in
place (copy first).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import TINY_EVOLVE_ARGV, TINY_EVOLVER

from sklearn_mln.datasets import load_digits_images


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


@pytest.fixture(scope="session")
def pool(digits_flat):
    """The first 300 digits, flat: a pool evolution runs on in a second."""
    X, y = digits_flat
    return X[:300], y[:300]
