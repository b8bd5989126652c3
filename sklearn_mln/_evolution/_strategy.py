"""The pycma adapter: ask / tell for a maximisation problem, silent, seeded, no files.

pycma draws its samples from NumPy's *global* generator and reseeds it at start. The
adapter keeps a private copy of that generator's state and swaps it in only around
pycma's own calls, so evolution is reproducible and the caller's global state is left
untouched. :func:`import_cma` imports pycma without its "Could not import
matplotlib.pyplot" warning (a base install has no matplotlib, and this package never plots
through pycma); every other warning of that import is kept.

State. :meth:`CMAStrategy.state` returns a :class:`CMAState`: the private generator's state
and pycma's ``CMAEvolutionStrategy``, pickled (pycma keeps its state in a graph of objects
and offers no export of its own, so a pickle is unavoidable). :meth:`CMAStrategy.from_state`
builds the strategy its arguments give and continues from a state. It reads the pickle with
:class:`~sklearn_mln._utils._safe_pickle.RestrictedUnpickler` and pycma's allow-list: only the
pycma / NumPy names that pycma's state holds resolve, nothing is called while loading but
NumPy's array / dtype / scalar rebuilders and ``range`` (pycma's classes are created without
running their constructors). After loading, every class or function the state refers to
must sit exactly where the freshly built strategy holds the same object, and the pycma
options (strings pycma may ``eval``) must equal the fresh strategy's. A tampered state can
therefore only make evolution continue from other numbers; it cannot run code.
"""

# pycma samples from the legacy global generator, so this module must manage its state.
# ruff: noqa: NPY002
from __future__ import annotations

import contextlib
import functools
import importlib
import io
import pickle
import types
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._utils._safe_pickle import NUMPY_REBUILDERS, NUMPY_TYPES, RestrictedUnpickler

#: above this many dimensions the covariance is diagonal (separable CMA-ES): the full
#: matrix costs O(n^2) memory / O(n^3) updates and needs ~n^2 samples to learn
DIAGONAL_THRESHOLD = 200
_RANDN = "numpy.random.randn"  # persistent id of pycma's sampler (NumPy's global randn)


def import_cma():
    """The ``cma`` module, imported without pycma's missing-matplotlib warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Could not import matplotlib.pyplot", category=UserWarning
        )
        import cma
    return cma


@dataclass(frozen=True)
class CMAState:
    """What a :class:`CMAStrategy` needs to continue (see the module docstring).

    Attributes
    ----------
    es_pickle : bytes
        pycma's ``CMAEvolutionStrategy``, pickled; read back only by
        :meth:`CMAStrategy.from_state`.
    rng_state : tuple
        The private copy of NumPy's global generator pycma samples from, as
        :func:`numpy.random.get_state` returns it.
    """

    es_pickle: bytes
    rng_state: tuple


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

    def state(self) -> CMAState:
        """The strategy's state as a value (see the module docstring)."""
        buffer = io.BytesIO()
        _CMAPickler(buffer, protocol=4).dump(self.es)
        return CMAState(buffer.getvalue(), self._rng_state)

    @classmethod
    def from_state(
        cls,
        state: CMAState,
        x0: np.ndarray,
        sigma0: float,
        popsize: int,
        seed: int,
        diagonal="auto",
    ) -> CMAStrategy:
        """The strategy the other arguments build, continued from ``state``.

        Raises ``ValueError`` if ``state`` is unsafe, corrupt or of another problem.
        """
        strategy = cls(x0, sigma0, popsize, seed, diagonal)
        es, fresh = unpickle_es(state.es_pickle), strategy.es
        if type(es) is not type(fresh) or getattr(es, "N", None) != fresh.N:
            raise ValueError("the CMA-ES state does not match this problem.")
        trusted = _code_refs(fresh)
        for obj in _code_refs(es):
            if not any(obj is t for t in trusted):
                raise ValueError(f"refusing the CMA-ES state: it refers to {obj!r}.")
        if not _same_options(es.opts, fresh.opts):
            raise ValueError("the CMA-ES options differ from this evolver's.")
        strategy.es, strategy._rng_state = es, state.rng_state
        return strategy


# ----------------------------------------------------------------------------- pickled state
@functools.cache
def _pycma_globals() -> tuple[dict, tuple, tuple]:
    """Names a pycma state may refer to; those it may call; the classes it may create."""
    import_cma()  # the package first, without its matplotlib warning
    names = {
        "cma.boundary_handler": ["BoundNone", "BoundTransform"],
        "cma.evolution_strategy": [
            "CMAEvolutionStrategy",
            "_CMASolutionDict_functional",
            "_CMAStopDict",
            "_StopTolXStagnation",
            "_pass",
        ],
        "cma.logger": ["CMADataLogger"],
        "cma.optimization_tools": ["BestSolution"],
        "cma.options_parameters": ["CMAOptions", "CMAParameters", "is_feasible"],
        "cma.recombination_weights": ["RecombinationWeights"],
        "cma.sampler": ["GaussFullSampler", "GaussStandardConstant"],
        # TPA replaces CSA from 300 dimensions on
        "cma.sigma_adaptation": ["CMAAdaptSigmaCSA", "CMAAdaptSigmaTPA", "_TPAParameters"],
        "cma.transformations": ["DiagonalDecoding", "GenoPheno", "RoundIntegerVariables"],
        "cma.utilities.utils": [
            "BlancClass",
            "DictFromTagsInString",
            "ElapsedWCTime",
            "MoreToWrite",
            "SolutionDict",
        ],
        "numpy.linalg": ["eigh"],
        "builtins": ["range"],
    }
    allowed = {
        (m, n): getattr(importlib.import_module(m), n) for m, ns in names.items() for n in ns
    }
    allowed.update({**NUMPY_REBUILDERS, **NUMPY_TYPES})
    callables = (*NUMPY_REBUILDERS.values(), range)
    classes = tuple(
        v for k, v in allowed.items() if k[0].startswith("cma.") and isinstance(v, type)
    )
    return allowed, callables, classes


class _CMAPickler(pickle.Pickler):
    """Pickles a pycma strategy, naming NumPy's global ``randn`` instead of copying it."""

    def persistent_id(self, obj):
        return _RANDN if obj is np.random.randn else None


def unpickle_es(blob: bytes) -> Any:
    """pycma's object from ``blob``, read with the restricted unpickler (no checks yet)."""
    allowed, callables, classes = _pycma_globals()
    unpickler = RestrictedUnpickler(
        io.BytesIO(blob), allowed, callables, classes, persistent={_RANDN: np.random.randn}
    )
    try:
        return unpickler.load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"unsafe or corrupt CMA-ES state, {exc}.") from None
    except Exception as exc:  # truncated or garbled pickles raise many kinds of errors
        raise ValueError(f"corrupt CMA-ES state ({exc!r}).") from None


def _code_refs(obj: Any) -> list:
    """Every class or function reachable from ``obj`` as a value (not as an instance's type)."""
    code_types = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    found, seen, stack = [], set(), [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, code_types):
            found.append(item)
            continue
        if id(item) in seen or isinstance(item, (str, bytes, int, float, complex, np.generic)):
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            stack.extend(item.ravel().tolist() if item.dtype.hasobject else [])
            continue
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        stack.extend(vars(item).values() if hasattr(item, "__dict__") else [])
    return found


def _same_options(a, b) -> bool:
    if type(a) is not type(b) or set(a) != set(b):
        return False
    for key in a:
        x, y = a[key], b[key]
        if x is y:
            continue
        if type(x) is not type(y):
            return False
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif not (x == y or (isinstance(x, float) and np.isnan(x) and np.isnan(y))):
            return False
    return True
