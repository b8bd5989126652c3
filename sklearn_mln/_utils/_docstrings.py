"""Docstring sections the estimators share, so that they read the same everywhere.

As imbalanced-learn's ``Substitution``: a docstring holds a line ``{name}`` alone, and
:func:`fill_doc` puts the fragment ``name`` in its place, indented as that line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

_Documented = TypeVar("_Documented", bound=Callable)

#: what every estimator takes as samples: flat features or images, channels first
_X_PARAMETERS = """Parameters
----------
X : array-like of shape (n_samples, n_features) or (n_samples, c, h, w)"""

#: the Parameters and Returns sections of an estimator's ``fit(X, y)``
FIT_SECTIONS = f"""{_X_PARAMETERS}
y : array-like of shape (n_samples,)

Returns
-------
self : object
    The fitted estimator."""

#: the Parameters and Returns sections of a classifier's ``predict(X)``
PREDICT_SECTIONS = f"""{_X_PARAMETERS}

Returns
-------
y_pred : ndarray of shape (n_samples,)"""

#: the Parameters and Returns sections of a classifier's ``predict_proba(X)``
PREDICT_PROBA_SECTIONS = f"""{_X_PARAMETERS}

Returns
-------
proba : ndarray of shape (n_samples, n_classes)"""

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)\{(?P<name>\w+)\}[ \t]*$", re.MULTILINE)


def fill_doc(**fragments: str) -> Callable[[_Documented], _Documented]:
    """Decorator: replace each line ``{name}`` of the docstring with ``fragments[name]``.

    The fragment's lines take the placeholder's indentation; a placeholder without a
    fragment raises a KeyError when the module is imported.
    """

    def indented(match: re.Match) -> str:
        indent = match["indent"]
        lines = fragments[match["name"]].splitlines()
        return "\n".join(indent + line if line else "" for line in lines)

    def decorate(documented: _Documented) -> _Documented:
        if documented.__doc__ is not None:  # None under python -OO
            documented.__doc__ = _PLACEHOLDER.sub(indented, documented.__doc__)
        return documented

    return decorate
