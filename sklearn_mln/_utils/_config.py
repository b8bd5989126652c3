"""The package's global configuration, scikit-learn style: ``get_config``, ``set_config``
and ``config_context``.

One process-wide setting (not per thread): the criterion runs inside training loops on
any thread (skorch, a user's loop), and a per-thread switch would silently not apply
there. Worker processes start from the environment: ``SKLEARN_MLN_NATIVE_KERNELS=1``
turns the native kernels on in every process that reads it at import.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec

_CONFIG = {"native_kernels": os.environ.get("SKLEARN_MLN_NATIVE_KERNELS", "0") == "1"}


def get_config() -> dict:
    """The current values of the package's settings (see :func:`set_config`).

    Returns
    -------
    dict
        A copy: changing it changes nothing.
    """
    return dict(_CONFIG)


def set_config(native_kernels: bool | None = None) -> None:
    """Set the package's global settings; ``None`` leaves a setting as it is.

    Parameters
    ----------
    native_kernels : bool, optional
        Compute a :class:`~sklearn_mln.MetaLossNetwork`'s value and logit gradient with a
        compiled kernel (numba; ``pip install "sklearn-mln[fast]"``) where it applies: on
        CPU, float32 or float64 logits, a per-class network with one hidden layer (tanh,
        sigmoid or relu) whose weights need no gradient -- a pretrained or evolved loss
        used as a criterion, and the candidates in :class:`~sklearn_mln.MLNEvolver`'s
        inner loop. Elsewhere the torch path runs as before.
        The values then agree with the torch path to float tolerance, not bit for bit
        (the float32 kernel uses a rational tanh accurate to a few units in the last
        place), and the first call in a process compiles the kernel (a second or two).
        Default: off, or on where the environment variable
        ``SKLEARN_MLN_NATIVE_KERNELS`` is ``1``.

    Examples
    --------
    >>> import sklearn_mln
    >>> sklearn_mln.get_config()["native_kernels"]
    False
    """
    if native_kernels is not None:
        if not isinstance(native_kernels, bool):
            raise ValueError(f"native_kernels must be a bool, got {native_kernels!r}.")
        if native_kernels and find_spec("numba") is None:
            raise ImportError(
                'native_kernels=True needs numba: pip install "sklearn-mln[fast]" '
                "(or pip install numba)."
            )
        _CONFIG["native_kernels"] = native_kernels


@contextmanager
def config_context(**settings) -> Iterator[None]:
    """Settings of :func:`set_config` for a ``with`` block, restored after it.

    Examples
    --------
    >>> import sklearn_mln
    >>> with sklearn_mln.config_context(native_kernels=False):
    ...     sklearn_mln.get_config()["native_kernels"]
    False
    """
    unknown = set(settings) - set(_CONFIG)
    if unknown:
        raise TypeError(f"Unknown settings {sorted(unknown)}; known: {sorted(_CONFIG)}.")
    before = get_config()
    set_config(**settings)
    try:
        yield
    finally:
        _CONFIG.update(before)
