"""Classical classification losses with the interface of a meta-loss network.

:class:`ClassicalLoss` wraps cross-entropy, MSE on the softmax, label smoothing, focal loss
and Poly-1 behind ``per_sample`` / ``forward``, so the inner loop, the classifier and the
benchmark treat them as they treat a :class:`~sklearn_mln.MetaLossNetwork`. A loss and its
parameters can be written as one string, ``"label_smoothing(smoothing=0.2)"``
(:func:`parse_classical_loss`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn


def _cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return -F.log_softmax(logits, -1).gather(-1, _expand_labels(y, logits)).squeeze(-1)


def _expand_labels(y: Tensor, logits: Tensor) -> Tensor:
    return y.expand(logits.shape[:-1]).unsqueeze(-1)


def _mse(logits: Tensor, y: Tensor) -> Tensor:
    onehot = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    return ((logits.softmax(-1) - onehot) ** 2).sum(-1)


def _label_smoothing(logits: Tensor, y: Tensor, smoothing: float = 0.1) -> Tensor:
    log_probs = F.log_softmax(logits, -1)
    nll = -log_probs.gather(-1, _expand_labels(y, logits)).squeeze(-1)
    return (1.0 - smoothing) * nll - smoothing * log_probs.mean(-1)


def _focal(logits: Tensor, y: Tensor, gamma: float = 2.0) -> Tensor:
    log_pt = F.log_softmax(logits, -1).gather(-1, _expand_labels(y, logits)).squeeze(-1)
    return -((1.0 - log_pt.exp()) ** gamma) * log_pt


def _poly1(logits: Tensor, y: Tensor, epsilon: float = 1.0) -> Tensor:
    # Poly-1 (Leng et al., 2022): cross-entropy plus epsilon (1 - p_true)
    log_pt = F.log_softmax(logits, -1).gather(-1, _expand_labels(y, logits)).squeeze(-1)
    return -log_pt + epsilon * (1.0 - log_pt.exp())


CLASSICAL_LOSSES: dict[str, tuple[Callable[..., Tensor], dict]] = {
    "cross_entropy": (_cross_entropy, {}),
    "mse": (_mse, {}),
    "label_smoothing": (_label_smoothing, {"smoothing": 0.1}),
    "focal": (_focal, {"gamma": 2.0}),
    "poly1": (_poly1, {"epsilon": 1.0}),
}


class ClassicalLoss(nn.Module):
    """A classical classification loss with the interface of :class:`MetaLossNetwork`.

    Parameters
    ----------
    name : {"cross_entropy", "mse", "label_smoothing", "focal", "poly1"}
        ``"mse"`` compares the softmax with the one-hot label (as in the paper);
        ``"poly1"`` is cross-entropy plus ``epsilon * (1 - p_true)`` (Poly-1).
    **params
        ``smoothing`` (label smoothing, default 0.1), ``gamma`` (focal, default 2) or
        ``epsilon`` (Poly-1, default 1).

    Examples
    --------
    >>> import torch
    >>> from sklearn_mln import ClassicalLoss
    >>> loss = ClassicalLoss("label_smoothing", smoothing=0.1)
    >>> float(loss(torch.zeros(2, 3), torch.tensor([0, 2])))  # uniform prediction: log(3)
    1.0986...
    """

    def __init__(self, name: str = "cross_entropy", **params: float) -> None:
        super().__init__()
        if name not in CLASSICAL_LOSSES:
            raise ValueError(
                f"Unknown loss {name!r}; classical losses are {sorted(CLASSICAL_LOSSES)}."
            )
        fn, defaults = CLASSICAL_LOSSES[name]
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(f"Loss {name!r} takes {sorted(defaults)}, got {sorted(unknown)}.")
        self.name = name
        self.params = {**defaults, **params}
        self._fn = fn

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        """Per-sample losses; ``logits`` ``(..., n, C)``, ``y`` ``(n,)`` or ``(..., n)``."""
        return self._fn(logits, y, **self.params)

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        return self.per_sample(logits, y).mean()

    def extra_repr(self) -> str:
        return ", ".join([repr(self.name)] + [f"{k}={v}" for k, v in self.params.items()])


# ----------------------------------------------------------------------------- names
_CALL = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def is_parameterised_name(text: str) -> bool:
    """Whether ``text`` has the form ``name(...)`` (see :func:`parse_classical_loss`)."""
    return _CALL.fullmatch(text) is not None


def parse_classical_loss(text: str) -> ClassicalLoss:
    """The classical loss ``"name"`` or ``"name(keyword=number, ...)"`` names.

    Parsing is strict: a loss of :data:`CLASSICAL_LOSSES`, its own keywords (each at most
    once) and plain decimal numbers.

    Raises
    ------
    ValueError
        Naming what is wrong and how the form is written.

    Examples
    --------
    >>> from sklearn_mln._losses._classical import parse_classical_loss
    >>> parse_classical_loss("label_smoothing(smoothing=0.9)")
    ClassicalLoss('label_smoothing', smoothing=0.9)
    """
    match = _CALL.fullmatch(text)
    name, body = (match[1], match[2]) if match else (text.strip(), "")

    def fail(reason: str):
        raise ValueError(
            f"Cannot read the loss {text!r}: {reason}. A classical loss is written as its name, "
            "optionally with its parameters: 'label_smoothing(smoothing=0.2)', "
            "'focal(gamma=1.5)', 'poly1(epsilon=2)'."
        )

    if name not in CLASSICAL_LOSSES:
        fail(f"{name!r} is none of the classical losses {sorted(CLASSICAL_LOSSES)}")
    defaults = CLASSICAL_LOSSES[name][1]
    params: dict[str, float] = {}
    for item in body.split(",") if body.strip() else []:
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key:
            fail(f"expected keyword=number, got {item.strip()!r}")
        if key not in defaults:
            fail(f"{name!r} takes {sorted(defaults)}, not {key!r}")
        if key in params:
            fail(f"{key!r} is given twice")
        if not _NUMBER.fullmatch(value):
            fail(f"{key}={value!r} is not a number")
        params[key] = float(value)
    return ClassicalLoss(name, **params)
