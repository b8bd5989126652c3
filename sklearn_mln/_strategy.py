"""The pycma adapter: ask / tell for a maximisation problem, silent, seeded, no files.

pycma draws its samples from NumPy's *global* generator and reseeds it at start. The
adapter keeps a private copy of that generator's state and swaps it in only around
pycma's own calls, so evolution is reproducible and the caller's global state is left
untouched. :func:`import_cma` imports pycma without its "Could not import
matplotlib.pyplot" warning (a base install has no matplotlib, and this package never plots
through pycma); every other warning of that import is kept.
"""

# pycma samples from the legacy global generator, so this module must manage its state.
# ruff: noqa: NPY002
from __future__ import annotations

import contextlib
import warnings

import numpy as np

#: above this many dimensions the covariance is diagonal (separable CMA-ES): the full
#: matrix costs O(n^2) memory / O(n^3) updates and needs ~n^2 samples to learn
DIAGONAL_THRESHOLD = 200


def import_cma():
    """The ``cma`` module, imported without pycma's missing-matplotlib warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Could not import matplotlib.pyplot", category=UserWarning
        )
        import cma
    return cma


class CMAStrategy:
    """CMA-ES that maximises fitness.

    Parameters
    ----------
    x0 : ndarray of shape (n,)
    sigma0 : float
    popsize : int
    seed : int
        Nonzero (pycma treats 0 / None as "seed from the clock").
    diagonal : bool or "auto"
        Separable CMA-ES; ``"auto"`` switches it on above :data:`DIAGONAL_THRESHOLD`.
    """

    def __init__(self, x0: np.ndarray, sigma0: float, popsize: int, seed: int, diagonal="auto"):
        cma = import_cma()
        if seed == 0:
            raise ValueError("pycma reads seed 0 as 'use the clock'; pass a nonzero seed.")
        self.diagonal = len(x0) > DIAGONAL_THRESHOLD if diagonal == "auto" else bool(diagonal)
        options = {
            "popsize": int(popsize),
            "seed": int(seed),
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            "verb_filenameprefix": "",
            "CMA_diagonal": self.diagonal,
            "maxiter": np.inf,
        }
        self._rng_state = None
        with self._own_global_rng():
            self.es = cma.CMAEvolutionStrategy(np.asarray(x0, dtype=float), float(sigma0), options)

    @contextlib.contextmanager
    def _own_global_rng(self):
        outer = np.random.get_state()
        if self._rng_state is not None:
            np.random.set_state(self._rng_state)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            self._rng_state = np.random.get_state()
            np.random.set_state(outer)

    def ask(self) -> np.ndarray:
        """``(popsize, n)`` candidate solutions."""
        with self._own_global_rng():
            return np.asarray(self.es.ask())

    def tell(self, solutions: np.ndarray, fitness: np.ndarray) -> None:
        """Report fitness (higher is better) for the solutions of the last :meth:`ask`."""
        with self._own_global_rng():
            self.es.tell(list(solutions), list(-np.asarray(fitness, dtype=float)))

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    @property
    def mean(self) -> np.ndarray:
        return np.array(self.es.mean, dtype=float)

    def stop(self) -> dict:
        """pycma's own termination criteria that fired (empty if none)."""
        with self._own_global_rng():
            return dict(self.es.stop())
