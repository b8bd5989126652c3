"""Checkpoints of an evolution: a run's :class:`~sklearn_mln._evolution._state.EvolutionState` as a
file, a fingerprint of the run, resume.

A checkpoint is one NumPy ``.npz`` archive, written atomically (temp file + ``os.replace``)
after every generation and read with ``numpy.load(allow_pickle=False)``. Format version 1:

* ``header``: JSON -- format name and version, package and pycma versions, the run's
  fingerprint, ``history``, the generations and fitness of the shortlist entries, the
  scalar parts of the random generators' states and CMA-ES's stop reason (``cma_stop``,
  ``null`` while it runs);
* ``initial_rng_keys``, ``rng_keys``, ``cma_rng_keys``: the Mersenne-Twister keys of the
  evolver's generator before set-up and after the last generation, and of the private
  copy of NumPy's global generator that pycma samples from;
* ``generation_best``, ``top``: the shortlist's parameter vectors;
* ``cma``: pycma's ``CMAEvolutionStrategy``, pickled
  (:class:`~sklearn_mln._evolution._strategy.CMAState`).

Trust model: a checkpoint is data, never code. The only pickle in it, pycma's state, is
read back by
:meth:`CMAStrategy.from_state <sklearn_mln._evolution._strategy.CMAStrategy.from_state>`
(restricted unpickling against an allow-list, then checked against a freshly built
strategy; see :mod:`sklearn_mln._evolution._strategy`); everything else is arrays and JSON,
checked
for type and shape here. A tampered file can only make evolution continue from other
numbers; it cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._losses._meta_loss import MetaLossNetwork
from .._utils._archive import read_archive, write_archive
from .._version import __version__
from ._state import EvolutionState, Shortlist
from ._strategy import CMAState, import_cma

FORMAT_NAME = "sklearn-mln-checkpoint"
FORMAT_VERSION = 1
#: parameters that change how (or how long), not what, is computed: they may differ
#: between a run and its resume, every other parameter must match
EXECUTION_PARAMS = frozenset(
    {
        "checkpoint_path",
        "n_jobs",
        "verbose",
        "max_time",
        "n_generations",
        "device",
        "vectorized",
        "refine_steps",
        "refine_lr",  # refinement runs after the saved state
    }  # fmt: skip
)
#: the file's name for each random generator's state
_GENERATORS = ("initial_rng", "rng", "cma_rng")


# ----------------------------------------------------------------------------- fingerprint
def _canonical(value: Any) -> Any:
    """A JSON-able stand-in for a parameter value that is stable across processes."""
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


def save_checkpoint(path, fingerprint: str, state: EvolutionState) -> None:
    """Write ``state`` of the run ``fingerprint`` to ``path`` atomically."""
    generators = dict(
        zip(_GENERATORS, (state.setup_rng_state, state.rng_state, state.strategy.rng_state))
    )
    keys, rng = {}, {}
    for name, generator in generators.items():
        keys[f"{name}_keys"], rng[name] = _split_rng(generator)
    shortlist = state.shortlist
    n = len(shortlist.generation_best[0][1]) if shortlist.generation_best else 0
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "cma_version": import_cma().__version__,
        "fingerprint": fingerprint,
        "history": list(state.history),
        "generation_best": [int(g) for g, _ in shortlist.generation_best],
        "top": [[float(f), int(g)] for f, g, _ in shortlist.top],
        "rng": rng,
        "cma_stop": state.stop_reason,
    }
    arrays = {
        "generation_best": np.array([t for _, t in shortlist.generation_best]).reshape(-1, n),
        "top": np.array([t for _, _, t in shortlist.top]).reshape(-1, n),
        "cma": np.frombuffer(state.strategy.es_pickle, dtype=np.uint8),
        **keys,
    }
    write_archive(path, header, arrays)


def load_checkpoint(path, fingerprint: str) -> EvolutionState | None:
    """The state saved at ``path``, or ``None`` if there is no file.

    Raises ``ValueError`` if the file is not a readable checkpoint of this format version
    and pycma version, or belongs to a run of other data or parameters than
    ``fingerprint``'s. pycma's state is checked when it is restored
    (:meth:`~sklearn_mln._evolution._strategy.CMAStrategy.from_state`).
    """
    cma = import_cma()
    path = Path(path)
    if not path.exists():
        return None
    source = repr(str(path))
    header, arrays = read_archive(path, FORMAT_NAME, FORMAT_VERSION, "checkpoint")
    if header.get("fingerprint") != fingerprint:
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
        return _state_from(header, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source} is a corrupt {FORMAT_NAME} file: {exc}") from None


def _state_from(header: dict, arrays: dict[str, np.ndarray]) -> EvolutionState:
    setup, rng, cma_rng = (_join_rng(arrays[f"{n}_keys"], header["rng"][n]) for n in _GENERATORS)
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
    shortlist = Shortlist(
        tuple((int(g), t) for g, t in zip(gens, best_thetas)),
        tuple((float(f), int(g), t) for (f, g), t in zip(top, top_thetas)),
    )
    return EvolutionState(
        setup_rng_state=setup,
        rng_state=rng,
        strategy=CMAState(blob.tobytes(), cma_rng),
        shortlist=shortlist,
        history=tuple(history),
        stop_reason=header["cma_stop"],
    )
