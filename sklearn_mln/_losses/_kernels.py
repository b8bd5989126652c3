"""CPU kernels of the meta-loss's inner-loop path (``meta_loss_per_sample(..., fast=True)``).

* :func:`fast_log_softmax`: torch's log-softmax, several times faster for a few classes.
* :class:`PerClassNetwork`: the per-class network's output with its input gradient
  computed in the forward pass (forward mode), for losses whose weights are constants.
* Each activation with its derivative from one pass (:data:`ACTIVATIONS_AND_SLOPES`).

They know nothing of a loss's parametrisation beyond the per-class network's layers:
``layers`` is ``[(weight (P, out, in), bias (P, out)), ...]`` as
:mod:`sklearn_mln._losses._meta_loss` unflattens it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def fast_log_softmax(logits: Tensor) -> Tensor:
    """``F.log_softmax(logits, -1)``, several times faster for a few classes on CPU.

    torch's kernel is slow when the last dimension is short (10 classes); the same value
    from elementwise ops and one short reduction is 3-4x faster, forward and backward.
    """
    shifted = logits - logits.detach().amax(-1, keepdim=True)
    return shifted - shifted.exp().sum(-1, keepdim=True).log()


def _tanh_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
    # 2 sigmoid(2x) - 1: torch's CPU tanh is several times slower than its sigmoid
    a = x.mul(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return a, torch.mul(a, a).neg_().add_(1.0)


def _sigmoid_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
    a = torch.sigmoid(x)
    return a, torch.sub(1.0, a).mul_(a)


def _relu_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
    return torch.relu(x), (x > 0).to(x.dtype)


def _softplus_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
    # F.softplus is the identity above its threshold (20), and so is its derivative
    return F.softplus(x), torch.where(x > 20.0, 1.0, torch.sigmoid(x))


def _gelu_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
    density = torch.exp(-0.5 * x * x) * (2.0 * torch.pi) ** -0.5
    return F.gelu(x), 0.5 * (1.0 + torch.erf(x * 0.5**0.5)) + x * density


#: each activation with its derivative, computed from the same pass
ACTIVATIONS_AND_SLOPES: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "tanh": _tanh_and_slope,
    "relu": _relu_and_slope,
    "sigmoid": _sigmoid_and_slope,
    "softplus": _softplus_and_slope,
    "gelu": _gelu_and_slope,
}


def _per_class_value_and_slope(
    pred: Tensor, onehot: Tensor, layers: list[tuple[Tensor, Tensor]], activation: str
) -> tuple[Tensor, Tensor]:
    """``sum_c net([q_c, y_c])`` ``(P, n)`` and ``d net / d q_c`` ``(P, n, C)``.

    The slope is carried forward alongside the activations (forward-mode: each class's
    network has one varying input), so no activation needs to be kept for a backward pass.
    Activations are laid out ``(P, units, n * C)``: the long axis is contiguous and every
    weight broadcasts as one scalar per row, which CPU elementwise kernels vectorise.
    """
    n_pop, n_samples, n_classes = pred.shape
    act_and_slope = ACTIVATIONS_AND_SLOPES[activation]
    weight, bias = layers[0]  # weight (P, H, 2): column 0 reads q_c, column 1 reads y_c
    w_pred, w_label = weight[:, :, 0:1], weight[:, :, 1:2]
    q = pred.reshape(n_pop, 1, -1)
    label = onehot.reshape(n_pop, 1, -1)
    h = torch.addcmul(bias.unsqueeze(-1), q, w_pred).addcmul_(label, w_label)
    slope = w_pred
    for weight, bias in layers[1:]:
        a, act_slope = act_and_slope(h)
        slope = torch.bmm(weight, act_slope.mul_(slope))
        h = torch.baddbmm(bias.unsqueeze(-1), weight, a)
    value = h.reshape(n_pop, n_samples, n_classes).sum(-1)
    return value, slope.expand(n_pop, 1, q.shape[-1]).reshape(n_pop, n_samples, n_classes)


class PerClassNetwork(torch.autograd.Function):
    """The per-class network's output with its input gradient computed in the forward pass.

    During inner training the meta-loss weights are constants (evolution needs no gradient
    through them), so the backward pass only needs ``d net / d q``: saving that one
    ``(P, n, C)`` tensor replaces autograd's per-layer activations and their backward
    kernels, the largest cost of a population step on a small classifier.
    """

    @staticmethod
    def forward(ctx, pred, onehot, layers, activation):
        value, slope = _per_class_value_and_slope(pred, onehot, layers, activation)
        ctx.save_for_backward(slope)
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_value):
        (slope,) = ctx.saved_tensors
        return grad_value.unsqueeze(-1) * slope, None, None, None
