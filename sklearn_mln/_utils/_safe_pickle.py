"""One restricted unpickler: a pickle is read as data, never as code.

A plain :func:`pickle.load` imports every global the file names and calls whatever it asks
for, so a tampered file runs code. :class:`RestrictedUnpickler` resolves only the globals of
an allow-list, calls only the allow-listed callables, creates instances only of allow-listed
classes (without running their constructors), accepts only a plain ``dict`` as an instance's
state, and refuses the opcodes that call constructors by other routes. It serves the two
pickles the package reads: CIFAR-10 batches (:mod:`sklearn_mln.datasets`: NumPy arrays,
bytes, lists, dicts) and pycma's state in a checkpoint (:mod:`sklearn_mln._evolution._strategy`).
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

#: NumPy's array, dtype and scalar rebuilders, under the module names numpy 1.x and 2.x
#: write (``_frombuffer`` is protocol 5's; ``_codecs.encode`` stores bytes in protocols 0-2)
NUMPY_REBUILDERS: dict[tuple[str, str], Any] = {("_codecs", "encode"): codecs.encode}
for _module in ("numpy.core", "numpy._core"):
    NUMPY_REBUILDERS[(f"{_module}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    NUMPY_REBUILDERS[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar
    NUMPY_REBUILDERS[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer
NUMPY_REBUILDERS[("numpy", "dtype")] = np.dtype
del _module
#: what a pickled NumPy array refers to without calling it
NUMPY_TYPES: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray}


class ForbiddenPickleError(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list."""


class RestrictedUnpickler(
    pickle._Unpickler
):  # the Python implementation: its opcodes can be hooked
    """Unpickler that resolves, calls and builds only what it is given.

    Parameters
    ----------
    file : binary file
    globals_ : mapping of (module, name) to object
        The only globals the pickle may name.
    callables : collection
        Those of ``globals_`` it may call (REDUCE), e.g. :data:`NUMPY_REBUILDERS`.
    classes : collection of type, default=()
        Those of ``globals_`` it may instantiate without a constructor (NEWOBJ).
    persistent : mapping of str to object, default={}
        Objects the pickle names by persistent id instead of holding them.
    hint : str, default=""
        Appended to every refusal's message.
    **kwargs
        Passed to :class:`pickle.Unpickler` (e.g. ``encoding="bytes"``).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(
        self,
        file,
        globals_: Mapping[tuple[str, str], Any],
        callables: Collection,
        classes: Collection[type] = (),
        persistent: Mapping[str, Any] | None = None,
        hint: str = "",
        **kwargs,
    ) -> None:
        super().__init__(file, **kwargs)
        self.globals_, self.hint = globals_, hint
        self.callables, self.classes = list(callables), list(classes)
        self.persistent = dict(persistent or {})

    def refuse(self, what: str):
        raise ForbiddenPickleError(
            f"refusing to load {what}" + (f": {self.hint}" if self.hint else "")
        )

    def find_class(self, module: str, name: str):
        try:
            return self.globals_[(module, name)]
        except KeyError:
            self.refuse(f"global {module}.{name}")

    def persistent_load(self, pid):
        if isinstance(pid, str) and pid in self.persistent:
            return self.persistent[pid]
        self.refuse(f"persistent id {pid!r}")

    def load_reduce(self):
        func = self.stack[-2]
        if not any(func is f for f in self.callables):
            self.refuse(f"a call of {func!r}")
        super().load_reduce()

    def load_newobj(self):
        if not any(self.stack[-2] is c for c in self.classes):
            self.refuse(f"an instance of {self.stack[-2]!r}")
        super().load_newobj()

    def load_build(self):
        inst, state = self.stack[-2], self.stack[-1]
        if not isinstance(inst, (np.ndarray, np.dtype)) and not (
            isinstance(state, dict) and all(type(k) is str for k in state)
        ):
            self.refuse(f"state of type {type(state).__name__} for {type(inst).__name__}")
        super().load_build()

    def load_global(self):
        # the Python unpickler drops each line's last byte unread, so a file cut inside a
        # GLOBAL line would name a shortened global: report the cut, not a refusal
        module, name = self.readline(), self.readline()
        if not (module.endswith(b"\n") and name.endswith(b"\n")):
            raise EOFError("pickle data was truncated inside a global's name")
        self.append(self.find_class(module[:-1].decode("utf-8"), name[:-1].decode("utf-8")))

    def load_forbidden(self):
        self.refuse("a pickle opcode that calls constructors")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.GLOBAL[0]] = load_global
    for _op in (pickle.INST, pickle.OBJ, pickle.NEWOBJ_EX, pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = load_forbidden
    del _op
