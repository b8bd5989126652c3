"""skorch-style ``<prefix>__<name>`` parameters of the estimators that train an MLNClassifier.

MLNClassifier hands its ``**kwargs`` to its skorch net (``module__hidden_sizes`` becomes the
module's ``hidden_sizes``); MLNClassifierCV hands them on to every candidate's
MLNClassifier. In both they are parameters like any other: ``__init__`` and ``set_params``
store them unchecked, ``get_params`` lists them (so ``clone`` and grid searches see them),
and ``fit`` checks them, as scikit-learn's estimator contract asks.
"""

from __future__ import annotations

from collections.abc import Iterable

#: prefixes of the skorch-routed ``**kwargs``
PREFIXES = ("module", "optimizer", "iterator_train", "iterator_valid", "callbacks", "dataset")


def _is_routed(name: str) -> bool:
    return any(name.startswith(prefix + "__") for prefix in PREFIXES)


def _is_fitted_name(name: str) -> bool:
    # scikit-learn's fitted attributes end in one "_"; a routed name may end in "__"
    return name.endswith("_") and not name.endswith("__")


def check_prefixed(estimator_name: str, keys: Iterable[str]) -> None:
    """Raise a skorch-style TypeError for keys that are not ``<prefix>__<name>``."""
    bad = []
    for key in sorted(keys):
        prefix = next((p for p in PREFIXES if key.startswith(p + "__")), None)
        if prefix is not None and len(key) > len(prefix) + 2:
            continue
        hint = next((p for p in sorted(PREFIXES, key=len, reverse=True) if key.startswith(p)), None)
        if hint is not None:
            bad.append(f"{key} (did you mean {hint}__{key[len(hint) :].lstrip('_')}?)")
        else:
            bad.append(key)
    if bad:
        raise TypeError(
            f"{estimator_name} got unexpected argument(s) {', '.join(bad)}; extra arguments "
            f"must be routed to skorch with one of the prefixes "
            f"{', '.join(p + '__' for p in PREFIXES)}."
        )


class RoutedParamsMixin:
    """``get_params`` / ``set_params`` for an estimator whose ``__init__`` stores ``**kwargs``.

    The ``**kwargs`` parameters are the public attributes beyond the signature that are not
    fitted ones, so a fitted attribute, now or in a later version, never leaks into
    ``get_params``. Put the mixin before ``BaseEstimator`` in the bases.
    """

    def _extra_names(self) -> list[str]:
        """The ``**kwargs`` parameters, sorted."""
        named = set(self._get_param_names())
        return sorted(
            k
            for k in vars(self)
            if not k.startswith("_") and k not in named and not _is_fitted_name(k)
        )

    def _check_extra_names(self) -> None:
        """Raise a TypeError (from ``fit``) for a ``**kwargs`` key without a skorch prefix."""
        check_prefixed(type(self).__name__, self._extra_names())

    def _prefixed(self, prefix: str) -> dict:
        """The ``**kwargs`` parameters ``<prefix>__<name>`` of one prefix, with their values."""
        return {k: getattr(self, k) for k in self._extra_names() if k.startswith(prefix + "__")}

    def get_params(self, deep=True):
        """Get the parameters of this estimator, the ``**kwargs`` ones included.

        Parameters
        ----------
        deep : bool, default=True
            If True, also return the parameters of contained estimators.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        params.update({k: getattr(self, k) for k in self._extra_names()})
        return params

    def set_params(self, **params):
        """Set the parameters of this estimator, ``<prefix>__<name>`` ones included.

        Parameters
        ----------
        **params : dict
            Estimator parameters. One that is not in the signature is stored as it is,
            as ``__init__`` stores ``**kwargs``; ``fit`` checks it.

        Returns
        -------
        self : estimator instance
            Estimator instance.
        """
        named = set(self._get_param_names())
        extra = {
            k: v for k, v in params.items() if _is_routed(k) or k.split("__", 1)[0] not in named
        }
        for key, value in extra.items():
            setattr(self, key, value)
        rest = {k: v for k, v in params.items() if k not in extra}
        if rest:
            super().set_params(**rest)
        return self
