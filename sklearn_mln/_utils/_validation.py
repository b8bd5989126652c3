"""Input checks shared by the estimators: flat features or images, random states."""

from __future__ import annotations

import math

import numpy as np


def check_sample_shape(estimator, X: np.ndarray, *, reset: bool) -> np.ndarray:
    """Accept ``(n, d)`` features or ``(n, c, h, w)`` images; remember or check the shape.

    With ``reset`` sets ``sample_shape_`` and ``n_features_in_`` (``d``, or ``c * h * w``
    for images); otherwise checks ``X`` against them.
    """
    if X.ndim not in (2, 4):
        hint = (
            " Reshape your data either using array.reshape(-1, 1) if your data has a "
            "single feature or array.reshape(1, -1) if it contains a single sample."
            if X.ndim == 1
            else ""
        )
        raise ValueError(
            f"X must be 2-D (n_samples, n_features) or 4-D (n_samples, channels, height, "
            f"width); got an array of shape {X.shape}.{hint}"
        )
    n_features = math.prod(X.shape[1:])
    if reset:
        estimator.sample_shape_ = tuple(int(s) for s in X.shape[1:])
        estimator.n_features_in_ = n_features
    elif tuple(X.shape[1:]) != estimator.sample_shape_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input (samples of shape "
            f"{estimator.sample_shape_}, got {tuple(X.shape[1:])})."
        )
    return X


def check_random_state(seed) -> np.random.RandomState:
    """A generator for ``seed``, never NumPy's global one.

    As :func:`sklearn.utils.check_random_state` for an int or a ``RandomState`` instance
    (used as it is, and advanced); ``None`` gives a fresh generator seeded from the
    operating system's entropy, where scikit-learn would hand out the global one. So no
    call of this package draws from, or moves, ``np.random``'s global state.
    """
    if seed is None:
        return np.random.RandomState()
    if isinstance(seed, np.random.RandomState):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    raise ValueError(
        f"random_state must be None, an int or a numpy.random.RandomState instance; got {seed!r}."
    )
