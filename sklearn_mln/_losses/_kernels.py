"""CPU kernels of the meta-loss (``MetaLossNetwork`` and the inner loop's population path).

* :class:`FusedPerClassLoss`: a per-class meta-loss whose gradients (with respect to the
  logits, and to its weights when they need one) are computed in its forward pass, so
  autograd sees one node instead of dozens of small ones.
* :func:`fast_log_softmax`: torch's log-softmax, several times faster for a few classes.
* Each activation with its derivative from one pass (:data:`ACTIVATIONS_AND_SLOPES`).

They know nothing of a loss's parametrisation beyond :class:`PerClassLayout`, which
:mod:`sklearn_mln._losses._meta_loss` derives from its spec.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _native


def fast_log_softmax(logits: Tensor) -> Tensor:
    """``F.log_softmax(logits, -1)``, several times faster for a few classes on CPU.

    torch's kernel is slow when the last dimension is short (10 classes); the same value
    from elementwise ops and one short reduction is 3-4x faster, forward and backward.
    """
    shifted = logits - logits.detach().amax(-1, keepdim=True)
    return shifted - shifted.exp().sum(-1, keepdim=True).log()


def _tanh_and_slope(x: Tensor, out=(None, None)) -> tuple[Tensor, Tensor]:
    a = torch.tanh(x, out=out[0])
    return a, torch.addcmul(x.new_ones(()), a, a, value=-1.0, out=out[1])


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


#: the activations whose pair can be written into given tensors (``out=``)
_WRITES_INTO = frozenset({"tanh"})


class _Workspace(threading.local):
    """Tensors reused from one call to the next, one set per thread.

    A population's hidden activations are megabytes a call; allocated afresh each step,
    every such tensor comes from new pages of memory (glibc maps large blocks), and
    touching those pages costs as much as the arithmetic. Only values that do not outlive
    the call live here (not the activations kept for the weights' gradient).
    """

    #: larger tensors are allocated each call: what a thread keeps stays bounded (a few
    #: of these), however large a batch a classifier trains on
    MAX_BYTES = 16 * 2**20

    def __init__(self) -> None:
        self.tensors: dict[tuple, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if math.prod(shape) * like.element_size() > self.MAX_BYTES:
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        key = (name, like.dtype, like.device)
        tensor = self.tensors.get(key)
        if tensor is None or tensor.shape != shape:
            tensor = self.tensors[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return tensor


_WORKSPACE = _Workspace()


#: each activation with its derivative, computed from the same pass
ACTIVATIONS_AND_SLOPES: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "tanh": _tanh_and_slope,
    "relu": _relu_and_slope,
    "sigmoid": _sigmoid_and_slope,
    "softplus": _softplus_and_slope,
    "gelu": _gelu_and_slope,
}


@dataclass(frozen=True)
class PerClassLayout:
    """What :class:`FusedPerClassLoss` needs to know of a per-class loss's architecture.

    ``layer_shapes`` are the net's ``(out, in)`` in ``theta``'s order, the first reading
    ``[q_c, y_c, *task]``, where ``task`` (passed with each call) holds the constant inputs
    that follow ``y_c`` (training progress, shots feature), folded into the first bias.
    """

    layer_shapes: tuple[tuple[int, int], ...]
    activation: str
    inputs: str  # "log_probs", "probs" or "logits"
    anchored: bool  # relu(CE + g) rather than softplus(g)

    @property
    def split_sizes(self) -> list[int]:
        """``theta``'s pieces: the linear term, then each layer's weight and bias."""
        return [2] + [size for o, i in self.layer_shapes for size in (o * i, o)]


@dataclass(frozen=True)
class _Weights:
    """``theta`` ``(P, n_params)`` cut into the pieces the kernel uses, in its dtype."""

    a0: Tensor  # (P, 1, 1)
    a1: Tensor  # (P, 1, 1)
    linear: bool  # False when a0 = a1 = 0 for every member (the linear term is skipped)
    layers: list[tuple[Tensor, Tensor]]  # weight (P, out, in), bias (P, out, 1)
    first_columns: list[Tensor]  # the first weight's columns (P, H, 1): q_c, y_c, *task


#: theta -> its pieces, for the few losses in use: cutting ``theta`` costs more than a
#: small classifier's step saves. An entry is used only while ``theta`` still holds the
#: values it was made from (compared in full: in-place writes through ``.data`` bypass
#: the version counter).
_WEIGHTS_CACHE: dict[tuple, tuple[Tensor, _Weights]] = {}
_WEIGHTS_CACHE_SIZE = 16


def _weights(theta: Tensor, layout: PerClassLayout, dtype: torch.dtype) -> _Weights:
    on_cpu = theta.device.type == "cpu"  # elsewhere a comparison would wait on the device
    if on_cpu:
        key = (theta.data_ptr(), theta.shape, theta.stride(), theta.dtype, dtype, layout)
        hit = _WEIGHTS_CACHE.get(key)
        if hit is not None and torch.equal(hit[0], theta):
            return hit[1]
    pieces = theta.to(dtype).split(layout.split_sizes, -1)
    n_pop = theta.shape[0]
    layers = [
        (weight.reshape(n_pop, out_f, in_f), bias.unsqueeze(-1))
        for (out_f, in_f), weight, bias in zip(layout.layer_shapes, pieces[1::2], pieces[2::2])
    ]
    a0, a1 = pieces[0].reshape(n_pop, 2, 1, 1).unbind(1)
    linear = bool(pieces[0].any()) if on_cpu else True
    weights = _Weights(a0, a1, linear, layers, list(layers[0][0].split(1, -1)))
    if on_cpu:
        if len(_WEIGHTS_CACHE) >= _WEIGHTS_CACHE_SIZE:
            _WEIGHTS_CACHE.pop(next(iter(_WEIGHTS_CACHE)))
        _WEIGHTS_CACHE[key] = (theta.clone(), weights)
    return weights


def _log_probs_and_probs(logits: Tensor, exact: bool) -> tuple[Tensor, Tensor]:
    if exact:
        log_probs = F.log_softmax(logits, -1)
        return log_probs, log_probs.exp()
    shifted = logits - logits.amax(-1, keepdim=True)
    probs = shifted.exp()
    total = probs.sum(-1, keepdim=True)
    return shifted.sub_(total.log()), probs.div_(total)


def _net_and_slope(weights, layout, task, flat_pred, flat_label, need_dz, need_dtheta):
    """The net's output ``(P, 1, n * C)`` and its slope d net / d q_c carried forward with
    the activations (each class's net has one varying input); the linear term
    (a0 + a1 y_c) q_c joins both. With ``need_dtheta`` also every layer's activations."""
    act_and_slope = ACTIVATIONS_AND_SLOPES[layout.activation]
    w_pred, w_label, *w_task = weights.first_columns
    bias = weights.layers[0][1]
    for value, column in zip(task, w_task):
        bias = torch.add(bias, column, alpha=value)
    first_weight = weights.layers[0][0]
    hidden_bytes = flat_pred.numel() * first_weight.shape[1] * flat_pred.element_size()
    # below glibc's mmap threshold (128 KiB) a fresh tensor comes from the heap's reused
    # pages, and the buffers' bookkeeping would cost more than it saves
    reuse = not need_dtheta and layout.activation in _WRITES_INTO and hidden_bytes >= 2**17

    def buffer(name: str, units: int) -> Tensor:
        return _WORKSPACE.get(name, (len(flat_pred), units, flat_pred.shape[-1]), flat_pred)

    h_out = buffer("h", first_weight.shape[1]) if reuse else None
    if len(flat_pred) > 1:
        # a population: both varying inputs in one product of depth 2, a GEMM that writes
        # (P, H, n * C) once where broadcasting multiply-adds read and write it twice
        inputs = torch.cat([flat_pred, flat_label.expand_as(flat_pred)], 1)
        h = torch.baddbmm(bias, first_weight[:, :, :2], inputs, out=h_out)
    else:  # one network (a criterion): fewer calls count more than passes
        h = torch.addcmul(bias, flat_pred, w_pred, out=h_out).addcmul_(flat_label, w_label)
    slope, hidden = w_pred, []
    for layer, (weight, bias) in enumerate(weights.layers[1:]):
        units = h.shape[1]
        out = (buffer(f"a{layer}", units), buffer(f"s{layer}", units)) if reuse else None
        a, act_slope = act_and_slope(h, out) if reuse else act_and_slope(h)
        if need_dtheta:
            hidden.append((a, act_slope))
        if need_dz and slope.shape[-1] == 1:  # one slope a unit: fold it into the weight
            slope = torch.bmm(weight * slope.transpose(1, 2), act_slope)
        elif need_dz:
            slope = torch.bmm(weight, act_slope * slope if need_dtheta else act_slope.mul_(slope))
        last = layer == len(weights.layers) - 2  # the output (P, 1, n * C) is returned
        h_out = buffer(f"h{layer}", weight.shape[1]) if reuse and not last else None
        h = torch.baddbmm(bias, weight, a, out=h_out)
    if weights.linear:
        coef = torch.addcmul(weights.a0, flat_label, weights.a1)
        h.addcmul_(flat_pred, coef)
        slope = slope + coef
    return h, slope, hidden


def _logit_gradient(layout, slope, d_g, log_probs, probs, onehot) -> Tensor:
    """d loss_i / d logits ``(P, n, C)`` from the net's slope d net / d q_c and ``d_g``
    (d loss_i / d g_i, ``(P, n)``): through the input transform and the softmax in closed
    form."""
    d_g_col = d_g.unsqueeze(-1)
    d_pred = slope.expand(-1, 1, probs.shape[1] * probs.shape[2]).view_as(probs) * d_g_col
    d_logits = d_log_probs = None
    if layout.inputs == "logits":
        d_logits = d_pred
    else:
        d_log_probs = d_pred.mul_(probs) if layout.inputs == "probs" else d_pred
    if layout.anchored:  # d CE / d log_probs = -onehot
        if d_log_probs is None:
            d_log_probs = onehot * d_g_col.neg()
        else:
            d_log_probs.addcmul_(onehot, d_g_col, value=-1.0)
    if d_log_probs is not None:
        d_softmax = d_log_probs.addcmul_(probs, d_log_probs.sum(-1, keepdim=True), value=-1.0)
        d_logits = d_softmax if d_logits is None else d_logits.add_(d_softmax)
    return d_logits


def _loss_forward(ctx, logits, theta, y, layout, task, exact, mean, need_dz, need_dtheta):
    """Per-sample losses ``(P, n)`` (or their means ``(P,)``) of a per-class meta-loss.

    With ``need_dz`` the loss's gradient with respect to the logits is computed alongside
    the value and kept on ``ctx`` (scaled by ``1 / n`` with ``mean``); with ``need_dtheta``
    what the weights' gradient needs. The net runs on ``(P, units, n * C)``: the long axis
    is contiguous and every weight is one scalar per row, which CPU elementwise kernels
    vectorise.
    """
    n_pop, n, n_classes = logits.shape
    dtype, flat_shape = logits.dtype, (n_pop, 1, n * n_classes)
    weights = _weights(theta, layout, dtype)
    log_probs, probs = _log_probs_and_probs(logits, exact)
    onehot = torch.zeros(y.shape + (n_classes,), dtype=dtype, device=logits.device)
    onehot.scatter_(-1, y.unsqueeze(-1), 1.0)  # (n, C) when every member has the same y
    pred = log_probs if layout.inputs == "log_probs" else probs
    flat_pred = (logits if layout.inputs == "logits" else pred).reshape(flat_shape)
    flat_label = onehot.view(-1, 1, n * n_classes)
    h, slope, hidden = _net_and_slope(
        weights, layout, task, flat_pred, flat_label, need_dz, need_dtheta
    )
    g = h.view(n_pop, n, n_classes).sum(-1)
    if layout.anchored:
        g.sub_(log_probs.gather(-1, y.unsqueeze(-1).expand(n_pop, n, 1)).view(n_pop, n))
        loss = g.clamp_min(0.0)
        d_g = g.gt(0.0).to(dtype) if need_dz or need_dtheta else None
    else:
        loss, d_g = _softplus_and_slope(g) if need_dz or need_dtheta else (F.softplus(g), None)
    if mean:
        loss = loss.mean(-1)
    if need_dz:
        d_g_dz = d_g.div(n) if mean else d_g
        ctx.d_logits = _logit_gradient(layout, slope, d_g_dz, log_probs, probs, onehot)
    if need_dtheta:
        ctx.dtheta_parts = (weights, d_g, flat_pred, flat_label, hidden)
    return loss


def _theta_gradient(ctx, grad_loss: Tensor, theta: Tensor) -> Tensor:
    """The gradient with respect to ``theta`` ``(P, n_params)``: backpropagation through
    the per-class net from what the forward pass kept."""
    weights, d_g, flat_pred, flat_label, hidden = ctx.dtheta_parts
    n_pop, n = d_g.shape
    d_g = d_g * (grad_loss.unsqueeze(-1) / n if ctx.mean else grad_loss)
    delta = d_g.unsqueeze(-1).expand(n_pop, n, flat_pred.shape[-1] // n).reshape(flat_pred.shape)
    delta_pred = delta * flat_pred
    parts = [delta_pred.sum(-1), (delta_pred * flat_label).sum(-1)]
    layer_grads = []
    for (weight, _), (a, act_slope) in zip(weights.layers[:0:-1], hidden[::-1]):
        layer_grads.append((torch.bmm(delta, a.transpose(1, 2)), delta.sum(-1)))
        delta = torch.bmm(weight.transpose(1, 2), delta).mul_(act_slope)
    columns = [(delta * flat_pred).sum(-1), (delta * flat_label).sum(-1)]
    d_bias = delta.sum(-1)
    columns += [d_bias * value for value in ctx.task]
    layer_grads.append((torch.stack(columns, -1), d_bias))
    for d_weight, d_bias in layer_grads[::-1]:
        parts += [d_weight.reshape(n_pop, -1), d_bias]
    return torch.cat(parts, -1).to(theta.dtype)


class FusedPerClassLoss(torch.autograd.Function):
    """A per-class meta-loss whose gradients are computed in its forward pass.

    ``apply(logits (P, n, C), theta (P, n_params), y (n,) or (P, n), layout, task, exact,
    mean, reference)`` gives the per-sample losses ``(P, n)`` (their means ``(P,)`` with
    ``mean``); one network's logits ``(n, C)`` with ``theta`` ``(1, n_params)`` give
    ``(n,)`` (a scalar with ``mean``), with no batch axis for autograd to add and remove.
    The gradient with respect to the logits is computed alongside the value (the net's
    input gradient carried forward, then the chain rule through the softmax in closed
    form), so the backward pass is one multiplication; the one with respect to ``theta``,
    when it is needed, backpropagates through the net from the kept activations. This
    replaces autograd's dozens of small nodes per call, the largest cost of a small
    classifier's step. ``exact`` uses torch's log-softmax (an anchored
    net at its start is then cross-entropy bit for bit); otherwise a faster one that can
    differ in the last bit. Differentiating the gradient again (``create_graph=True``)
    goes through ``reference(logits, theta)``, the same loss through plain autograd.
    """

    @staticmethod
    def forward(ctx, logits, theta, y, layout, task, exact, mean, reference):
        need_dz, need_dtheta = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.layout, ctx.task, ctx.mean, ctx.reference = layout, task, mean, reference
        ctx.save_for_backward(logits, theta)
        single = logits.ndim == 2  # one network's (n, C): no batch axis on either side
        native = _native.applies(layout, logits, need_dtheta)
        with torch.no_grad():
            batch = logits.unsqueeze(0) if single else logits
            loss = (_native.loss_forward if native else _loss_forward)(
                ctx, batch, theta, y, layout, task, exact, mean, need_dz, need_dtheta
            )
        if single and need_dz:
            ctx.d_logits = ctx.d_logits.view_as(logits)
        return loss.squeeze(0) if single else loss

    @staticmethod
    def backward(ctx, grad_loss):
        logits, theta = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the gradient itself is differentiated
            inputs = [t for t, need in zip((logits, theta), ctx.needs_input_grad) if need]
            with torch.enable_grad():
                value = ctx.reference(logits, theta)
                grads = iter(torch.autograd.grad(value, inputs, grad_loss, create_graph=True))
            d_logits, d_theta = (next(grads) if need else None for need in ctx.needs_input_grad[:2])
            return d_logits, d_theta, None, None, None, None, None, None
        d_logits = d_theta = None
        if ctx.needs_input_grad[0]:
            if ctx.d_logits.ndim == 2:  # one network: grad_loss is a scalar or (n,)
                scale = grad_loss if ctx.mean else grad_loss.unsqueeze(-1)
            else:
                scale = grad_loss.reshape(-1, 1, 1) if ctx.mean else grad_loss.unsqueeze(-1)
            d_logits = ctx.d_logits * scale
        if ctx.needs_input_grad[1]:
            d_theta = _theta_gradient(ctx, grad_loss, theta)
        return d_logits, d_theta, None, None, None, None, None, None
