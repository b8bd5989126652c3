"""Checkpoints of an evolution: atomic state files, a fingerprint of the run, resume.

A checkpoint is one NumPy ``.npz`` archive, written atomically (temp file + ``os.replace``)
after every generation and read with ``numpy.load(allow_pickle=False)``:

* ``header``: JSON -- format name and version, package and pycma versions, the run's
  fingerprint, ``history_``, the generations and fitness of the shortlist entries, the
  scalar parts of the random generators' states and whether CMA-ES has stopped;
* ``initial_rng_keys``, ``rng_keys``, ``cma_rng_keys``: the Mersenne-Twister keys of the
  evolver's generator at the start of ``fit`` and after the last generation, and of the
  private copy of NumPy's global generator that pycma samples from;
* ``generation_best``, ``top``: the shortlist's parameter vectors;
* ``cma``: the pycma ``CMAEvolutionStrategy``, pickled.

Trust model: a checkpoint is data, never code. The only pickle in it (pycma's state) is
read by :class:`_CMAUnpickler`, which resolves only the pycma / NumPy names that pycma's
state holds (an allow-list), calls nothing while loading but NumPy's array / dtype /
scalar rebuilders and ``range`` (pycma's classes are created without running their
constructors), and refuses everything else. After loading, every class or function the
state refers to must sit exactly where a freshly built strategy holds the same object,
and the pycma options (strings pycma may ``eval``) must equal the ones the current
parameters produce. A tampered file can therefore only make evolution continue from
other numbers; it cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._archive import read_archive, write_archive

FORMAT_NAME = "sklearn-mln-checkpoint"
FORMAT_VERSION = 1
#: parameters that change how (or how long), not what, is computed: they may differ
#: between a run and its resume, every other parameter must match
EXECUTION_PARAMS = frozenset(
    {"checkpoint_path", "n_jobs", "verbose", "max_time", "n_generations", "device", "vectorized"}
)
_RANDN = "numpy.random.randn"  # persistent id of pycma's sampler (NumPy's global randn)


@dataclass
class EvolutionState:
    """Everything :class:`MLNEvolver` needs to continue a run (see the module docstring)."""

    fingerprint: str
    initial_rng_state: tuple
    rng_state: tuple
    cma_pickle: bytes
    cma_rng_state: tuple
    history: list
    generation_best: list  # [(generation, theta)]
    top: list  # [(fitness, generation, theta)]
    cma_stop: str | None  # pycma's stop reason once it fired, else None


# ----------------------------------------------------------------------------- fingerprint
def _canonical(value: Any) -> Any:
    """A JSON-able stand-in for a parameter value that is stable across processes."""
    import torch

    from ._meta_loss import MetaLossNetwork

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.random.RandomState):
        return "RandomState instance"  # its state is stored in the checkpoint itself
    if isinstance(value, MetaLossNetwork):
        theta = value.get_flat_params()
        return {"spec": value.spec.to_dict(), "theta": hashlib.sha256(theta).hexdigest()}
    if isinstance(value, torch.nn.Module):
        return f"module instance {value!r}"  # the architecture; weights are re-drawn
    if isinstance(value, (type, types.FunctionType)):
        return f"{value.__module__}.{value.__qualname__}"
    return f"{type(value).__module__}.{type(value).__qualname__} instance"


def fingerprint(X: np.ndarray, y: np.ndarray, classes: np.ndarray, params: dict) -> str:
    """SHA-256 of the data and of the parameters outside :data:`EXECUTION_PARAMS`."""
    digest = hashlib.sha256()
    X = np.ascontiguousarray(X)
    y = np.ascontiguousarray(y, dtype=np.int64)
    digest.update(json.dumps([X.dtype.str, list(X.shape), len(y)]).encode())
    digest.update(X.view(np.uint8).reshape(-1) if X.size else b"")
    digest.update(y.view(np.uint8).reshape(-1) if y.size else b"")
    digest.update(json.dumps([repr(c) for c in classes.tolist()]).encode())
    relevant = {k: _canonical(v) for k, v in params.items() if k not in EXECUTION_PARAMS}
    digest.update(json.dumps(relevant, sort_keys=True).encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- pycma state
def _allowed_globals() -> tuple[dict, set, set]:
    """Names a pycma state may refer to; the subset that may be called (REDUCE); the classes."""
    import importlib

    from ._strategy import import_cma

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
        "cma.sigma_adaptation": ["CMAAdaptSigmaCSA"],
        "cma.transformations": ["DiagonalDecoding", "GenoPheno", "RoundIntegerVariables"],
        "cma.utilities.utils": [
            "BlancClass",
            "DictFromTagsInString",
            "ElapsedWCTime",
            "MoreToWrite",
            "SolutionDict",
        ],
        "numpy": ["ndarray", "dtype"],
        "numpy.linalg": ["eigh"],
        "builtins": ["range"],
    }
    allowed = {
        (m, n): getattr(importlib.import_module(m), n) for m, ns in names.items() for n in ns
    }
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core import multiarray
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    callable_ = {multiarray._reconstruct, multiarray.scalar, np.dtype, range}
    classes = {v for v in allowed.values() if isinstance(v, type)}
    return allowed, callable_, classes


class _CMAPickler(pickle.Pickler):
    """Pickles a pycma strategy, naming NumPy's global ``randn`` instead of copying it."""

    def persistent_id(self, obj):
        return _RANDN if obj is np.random.randn else None


class _CMAUnpickler(pickle._Unpickler):  # the Python implementation: its opcodes can be hooked
    """Rebuilds a pycma strategy from allow-listed names, calling no constructor."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file) -> None:
        super().__init__(file)
        self.allowed, self.callable, self.classes = _allowed_globals()

    def refuse(self, what: str):
        raise pickle.UnpicklingError(f"refusing to load {what}")

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            self.refuse(f"global {module}.{name}")

    def persistent_load(self, pid):
        if pid == _RANDN:
            return np.random.randn
        self.refuse(f"persistent id {pid!r}")

    def load_reduce(self):
        func = self.stack[-2]
        if not any(func is f for f in self.callable):
            self.refuse(f"a call of {func!r}")
        super().load_reduce()

    def load_newobj(self):
        if self.stack[-2] not in self.classes:
            self.refuse(f"an instance of {self.stack[-2]!r}")
        super().load_newobj()

    def load_build(self):
        inst, state = self.stack[-2], self.stack[-1]
        if not isinstance(inst, (np.ndarray, np.dtype)) and not (
            isinstance(state, dict) and all(type(k) is str for k in state)
        ):
            self.refuse(f"state of type {type(state).__name__} for {type(inst).__name__}")
        super().load_build()

    def load_forbidden(self):
        self.refuse("a pickle opcode that calls constructors")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.BUILD[0]] = load_build
    for _op in (pickle.INST, pickle.OBJ, pickle.NEWOBJ_EX, pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = load_forbidden
    del _op


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


def capture_strategy(strategy) -> tuple[bytes, tuple]:
    """pycma's pickled state and the strategy's private global-generator state."""
    buffer = io.BytesIO()
    _CMAPickler(buffer, protocol=4).dump(strategy.es)
    return buffer.getvalue(), strategy._rng_state


def restore_strategy(strategy, cma_pickle: bytes, cma_rng_state: tuple, source: str) -> None:
    """Put a checkpoint's pycma state into ``strategy``, a freshly built, equal strategy."""
    try:
        es = _CMAUnpickler(io.BytesIO(cma_pickle)).load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{source}: unsafe or corrupt CMA-ES state, {exc}.") from None
    except Exception as exc:  # truncated or garbled pickles raise many kinds of errors
        raise ValueError(f"{source}: corrupt CMA-ES state ({exc!r}).") from None
    fresh = strategy.es
    if type(es) is not type(fresh) or getattr(es, "N", None) != fresh.N:
        raise ValueError(f"{source}: the CMA-ES state does not match this problem.")
    trusted = _code_refs(fresh)
    for obj in _code_refs(es):
        if not any(obj is t for t in trusted):
            raise ValueError(f"{source}: refusing the CMA-ES state: it refers to {obj!r}.")
    if not _same_options(es.opts, fresh.opts):
        raise ValueError(f"{source}: the CMA-ES options differ from this evolver's.")
    strategy.es = es
    strategy._rng_state = cma_rng_state


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


# ----------------------------------------------------------------------------- file
def _split_rng(state: tuple) -> tuple[np.ndarray, list]:
    name, keys, pos, has_gauss, cached = state
    return np.asarray(keys, dtype=np.uint32), [str(name), int(pos), int(has_gauss), float(cached)]


def _join_rng(keys: np.ndarray, rest: Any) -> tuple:
    ok = (
        isinstance(keys, np.ndarray)
        and keys.dtype == np.uint32
        and keys.shape == (624,)
        and isinstance(rest, list)
        and len(rest) == 4
        and rest[0] == "MT19937"
        and isinstance(rest[1], int)
        and 0 <= rest[1] <= 624
        and rest[2] in (0, 1)
        and isinstance(rest[3], (int, float))
    )
    if not ok:
        raise ValueError("invalid random generator state")
    return ("MT19937", keys, rest[1], rest[2], float(rest[3]))


def save_checkpoint(path, state: EvolutionState) -> None:
    """Write ``state`` to ``path`` atomically."""
    from ._strategy import import_cma
    from ._version import __version__

    cma = import_cma()

    keys = {}
    rng = {}
    for name in ("initial_rng", "rng", "cma_rng"):
        keys[f"{name}_keys"], rng[name] = _split_rng(getattr(state, f"{name}_state"))
    n = len(state.generation_best[0][1]) if state.generation_best else 0
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "cma_version": cma.__version__,
        "fingerprint": state.fingerprint,
        "history": state.history,
        "generation_best": [int(g) for g, _ in state.generation_best],
        "top": [[float(f), int(g)] for f, g, _ in state.top],
        "rng": rng,
        "cma_stop": state.cma_stop,
    }
    write_archive(
        path,
        header,
        {
            "generation_best": np.array([t for _, t in state.generation_best]).reshape(-1, n),
            "top": np.array([t for _, _, t in state.top]).reshape(-1, n),
            "cma": np.frombuffer(state.cma_pickle, dtype=np.uint8),
            **keys,
        },
    )


def load_checkpoint(path, expected_fingerprint: str) -> EvolutionState | None:
    """The state saved at ``path``, or ``None`` if there is no file.

    Raises ``ValueError`` if the file is not a readable checkpoint of this version, or
    belongs to other data or parameters.
    """
    from ._strategy import import_cma

    cma = import_cma()
    path = Path(path)
    if not path.exists():
        return None
    source = repr(str(path))
    header, arrays = read_archive(path, FORMAT_NAME, FORMAT_VERSION, "checkpoint")
    if header.get("fingerprint") != expected_fingerprint:
        raise ValueError(
            f"The checkpoint {source} belongs to a run with other data or parameters; "
            "delete it, or pass another checkpoint_path, to start a new run."
        )
    if header.get("cma_version") != cma.__version__:
        raise ValueError(
            f"{source} was written with pycma {header.get('cma_version')}, but pycma "
            f"{cma.__version__} is installed; resume it with that version or start over."
        )
    try:
        rng = {
            name: _join_rng(arrays[f"{name}_keys"], header["rng"][name])
            for name in ("initial_rng", "rng", "cma_rng")
        }
        history, gens, top = header["history"], header["generation_best"], header["top"]
        best_thetas, top_thetas, blob = arrays["generation_best"], arrays["top"], arrays["cma"]
        valid = (
            isinstance(history, list)
            and all(isinstance(h, dict) for h in history)
            and best_thetas.shape[0] == len(gens)
            and top_thetas.shape[0] == len(top)
            and best_thetas.dtype == top_thetas.dtype == np.float64
            and blob.dtype == np.uint8
            and isinstance(header["cma_stop"], (str, type(None)))
        )
        if not valid:
            raise ValueError("inconsistent contents")
        state = EvolutionState(
            fingerprint=header["fingerprint"],
            initial_rng_state=rng["initial_rng"],
            rng_state=rng["rng"],
            cma_pickle=blob.tobytes(),
            cma_rng_state=rng["cma_rng"],
            history=history,
            generation_best=[(int(g), t) for g, t in zip(gens, best_thetas)],
            top=[(float(f), int(g), t) for (f, g), t in zip(top, top_thetas)],
            cma_stop=header["cma_stop"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source} is a corrupt {FORMAT_NAME} file: {exc}") from None
    return state
