"""What a user passes as a loss, turned into a frozen loss module.

:func:`resolve_loss` accepts a classical loss by name, with or without its parameters
(``"label_smoothing(smoothing=0.2)"``), a :class:`~sklearn_mln.MetaLossNetwork` or
:class:`~sklearn_mln.ClassicalLoss`, a fitted evolver, the name of a shipped pretrained
loss or the path of a saved one. It sits above the losses and ``pretrained``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from torch import nn

from .. import pretrained
from ._classical import (
    CLASSICAL_LOSSES,
    ClassicalLoss,
    is_parameterised_name,
    parse_classical_loss,
)
from ._meta_loss import load_meta_loss


def frozen_copy(loss: nn.Module) -> nn.Module:
    """A copy of ``loss`` whose parameters do not require gradients."""
    loss = copy.deepcopy(loss)
    for p in loss.parameters():
        p.requires_grad_(False)
    return loss


def resolve_loss(meta_loss) -> nn.Module:
    """Turn what a user passes as ``meta_loss`` into a frozen loss module.

    Accepts a classical loss name, optionally with parameters
    (``"label_smoothing(smoothing=0.9)"``, parsed strictly by
    :func:`~sklearn_mln._losses._classical.parse_classical_loss`), a :class:`MetaLossNetwork` or
    :class:`ClassicalLoss`, a path to a saved meta-loss, a fitted evolver (anything with
    ``meta_loss_``), or the name of a shipped pretrained loss.
    """
    if isinstance(meta_loss, nn.Module):
        if not hasattr(meta_loss, "per_sample"):
            raise TypeError(
                "meta_loss modules must be a MetaLossNetwork or ClassicalLoss; wrap other "
                "criteria in a skorch NeuralNetClassifier directly."
            )
        return frozen_copy(meta_loss)
    if hasattr(meta_loss, "meta_loss_"):
        return frozen_copy(meta_loss.meta_loss_)
    if isinstance(meta_loss, str) and meta_loss in CLASSICAL_LOSSES:
        return ClassicalLoss(meta_loss)
    if isinstance(meta_loss, (str, os.PathLike)):
        return _resolve_text(meta_loss)
    if hasattr(meta_loss, "fit") and hasattr(meta_loss, "get_params"):
        raise ValueError("The evolver passed as meta_loss is not fitted; call fit first.")
    raise TypeError(
        "meta_loss must be a loss name, a MetaLossNetwork, a path to a saved one or a fitted "
        f"MLNEvolver; got {type(meta_loss).__name__}."
    )


def _resolve_text(meta_loss: str | os.PathLike) -> nn.Module:
    """A parameterised classical loss, a pretrained loss or a saved file (in that order,
    but an existing file wins over a string that looks like ``name(...)``)."""
    is_file = Path(meta_loss).is_file()
    if isinstance(meta_loss, str) and is_parameterised_name(meta_loss) and not is_file:
        return parse_classical_loss(meta_loss)
    if isinstance(meta_loss, str) and meta_loss in pretrained.PRETRAINED:
        return frozen_copy(pretrained.load_pretrained(meta_loss))
    if is_file:
        return frozen_copy(load_meta_loss(meta_loss))
    raise ValueError(
        f"meta_loss={meta_loss!r} is neither a classical loss {sorted(CLASSICAL_LOSSES)} "
        "(optionally with its parameters, e.g. 'label_smoothing(smoothing=0.2)'), a "
        f"pretrained loss {sorted(pretrained.PRETRAINED)}, nor an existing file."
    )
