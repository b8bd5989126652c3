"""A compiled kernel (numba) for per-class meta-losses: value and logit gradient in one call.

A per-class loss of 100 samples x 10 classes is some thirty torch calls of a few
microseconds each, so in a training loop the loss costs calls, not arithmetic: it makes a
small classifier's step 2-3x as slow as with cross-entropy. This kernel computes every
sample's loss and its gradient with respect to the logits in one call, for one network
(a criterion) or a population (one network per member, the inner loop of evolution),
reading each element a few times instead of dozens. :func:`loss_forward` has the
contract of :func:`~sklearn_mln._losses._kernels._loss_forward`, which
:class:`~sklearn_mln._losses._kernels.FusedPerClassLoss` calls instead where
:func:`applies`: turned on by :func:`~sklearn_mln.set_config`, on CPU, float32 or float64,
weights without gradient, one hidden layer of tanh, sigmoid or relu. numba is imported and
each kernel compiled on first use.

float32 uses a rational tanh (Eigen's, accurate to a few units in the last place) that
the compiler vectorises; float64 uses the math library's. Multiply-adds may be fused.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from torch import Tensor

from .._utils import _config

_ACTIVATIONS = ("tanh", "sigmoid", "relu")
_INPUT_CODES = {"log_probs": 0, "probs": 1, "logits": 2}
_DTYPES = (torch.float32, torch.float64)


def applies(layout, logits: Tensor, need_dtheta: bool) -> bool:
    """Whether the kernel serves this call (and the configuration asks for it)."""
    return (
        _config._CONFIG["native_kernels"]
        and not need_dtheta
        and logits.numel() > 0
        and logits.device.type == "cpu"
        and logits.dtype in _DTYPES
        and len(layout.layer_shapes) == 2
        and layout.activation in _ACTIVATIONS
    )


def loss_forward(ctx, logits, theta, y, layout, task, exact, mean, need_dz, need_dtheta):
    """Per-sample losses ``(P, n)`` (their means ``(P,)`` with ``mean``) of ``P`` networks,
    with d loss / d logits on ``ctx.d_logits`` (scaled by ``1 / n`` with ``mean``).

    The signature of :func:`~sklearn_mln._losses._kernels._loss_forward`; ``exact`` is
    not kept (values agree to float tolerance), ``need_dtheta`` is never set here."""
    z = logits.detach().contiguous().numpy()
    n_pop, n, _ = z.shape
    weights = _prepared_weights(theta, layout, task, z.dtype)
    labels = np.ascontiguousarray(np.broadcast_to(y.numpy(), (n_pop, n)))
    losses, means, grad = np.empty((n_pop, n), z.dtype), np.empty(n_pop, z.dtype), np.empty_like(z)
    scale = 1.0 / n if mean else 1.0
    codes = (_INPUT_CODES[layout.inputs], layout.anchored, scale)
    _kernel(z.dtype, layout.activation)(z, labels, *weights, *codes, losses, means, grad)
    ctx.d_logits = torch.from_numpy(grad)
    return torch.from_numpy(means if mean else losses)


#: (theta's values, task, dtype) -> the kernel's weight arrays: a criterion's loss is the
#: same every step, a population's for every step of a generation
_PREPARED: dict[tuple, tuple] = {}


def _prepared_weights(theta: Tensor, layout, task, dtype) -> tuple:
    flat = theta.detach().numpy()  # (P, n_params), on CPU: the logits are (applies)
    key = (flat.tobytes(), flat.shape, task, dtype.char)
    hit = _PREPARED.get(key)
    if hit is not None:
        return hit
    linear, w1, b1, w2, b2 = np.split(flat, np.cumsum(layout.split_sizes)[:-1], axis=1)
    w1 = w1.reshape(len(flat), *layout.layer_shapes[0])  # columns: q_c, y_c, *task
    b1 = b1 + sum(value * w1[:, :, 2 + j] for j, value in enumerate(task))  # constant inputs
    pieces = (w1[:, :, 0], w1[:, :, 1], b1, w2, b2[:, 0], linear[:, 0], linear[:, 1])
    prepared = tuple(np.ascontiguousarray(a, dtype=dtype) for a in pieces)
    if len(_PREPARED) >= 16:
        _PREPARED.pop(next(iter(_PREPARED)))
    _PREPARED[key] = prepared
    return prepared


@cache
def _kernel(dtype, activation: str):
    """The compiled kernel for logits of ``dtype`` and the net's ``activation``."""
    import numba

    real = np.float32 if dtype == np.float32 else np.float64
    # error_model="numpy": a float division without a zero check, so the loops vectorise;
    # "contract" lets a multiply and an add fuse (one rounding instead of two): the net's
    # loop measured a fifth faster, and no other fast-math licence is taken
    options = dict(error_model="numpy", boundscheck=False, fastmath={"contract"})
    jit = numba.njit(inline="always", **options)
    tanh = jit(_rational_tanh) if real is np.float32 else math.tanh
    one, half, zero = real(1.0), real(0.5), real(0.0)

    def tanh_and_slope(x):
        a = tanh(x)
        return a, one - a * a

    def sigmoid_and_slope(x):
        a = half + half * tanh(half * x)
        return a, a * (one - a)

    def relu_and_slope(x):
        return max(x, zero), one if x > zero else zero

    chosen = {"tanh": tanh_and_slope, "sigmoid": sigmoid_and_slope, "relu": relu_and_slope}
    kernel = _make_loss(jit, jit(chosen[activation]), real)
    return numba.njit(nogil=True, **options)(kernel)


def _rational_tanh(x):
    # Eigen's generic_fast_tanh_float: a 13/6 rational function, clamped where tanh is
    # +-1 in float32; no branches or calls, so loops over it vectorise
    f = np.float32
    x = min(max(x, f(-7.90531110763549805)), f(7.90531110763549805))
    x2 = x * x
    p = f(-2.76076847742355e-16)
    p = p * x2 + f(2.00018790482477e-13)
    p = p * x2 + f(-8.60467152213735e-11)
    p = p * x2 + f(5.12229709037114e-08)
    p = p * x2 + f(1.48572235717979e-05)
    p = p * x2 + f(6.37261928875436e-04)
    p = p * x2 + f(4.89352455891786e-03)
    q = f(1.19825839466702e-06)
    q = q * x2 + f(1.18534705686654e-04)
    q = q * x2 + f(2.26843463243900e-03)
    q = q * x2 + f(4.89352518554385e-03)
    return p * x / q


def _make_loss(jit, activation_and_slope, real):
    """The kernel's Python source, for the compiler; ``real`` is the logits' float type."""
    softmax, net, backward = (
        jit(_make_softmax(real)),
        jit(_make_net(activation_and_slope)),
        jit(_make_backward(real)),
    )

    def loss_and_gradient(
        z, y, w_pred, w_label, b1, w2, b2, a0, a1, inputs, anchored, scale, losses, means, grad
    ):
        """Member p's losses into ``losses[p]`` and their mean into ``means[p]``, ``scale`` x
        their logit gradient into ``grad[p]``; the weights are one row (or value) a member."""
        size = z.shape[1] * z.shape[2]  # one member's elements; scratch shared by members
        log_p, probs, label = (
            np.empty(size, z.dtype),
            np.empty(size, z.dtype),
            np.empty(size, z.dtype),
        )
        out, slope = np.empty(size, z.dtype), np.empty(size, z.dtype)
        for p in range(z.shape[0]):
            softmax(z[p], y[p], log_p, probs, label)
            pred = log_p if inputs == 0 else probs if inputs == 1 else z[p].copy().reshape(-1)
            net(pred, label, w_pred[p], w_label[p], b1[p], w2[p], b2[p], a0[p], a1[p], out, slope)
            backward(out, slope, log_p, probs, y[p], inputs, anchored, scale, losses[p], grad[p])
            means[p] = losses[p].sum() / z.shape[1]

    return loss_and_gradient


def _make_softmax(real):
    zero, one = real(0.0), real(1.0)

    def softmax(z, y, log_p, probs, label):
        """Log-probabilities, probabilities and one-hot labels into flat ``(n * C,)`` arrays."""
        n, n_classes = z.shape
        label[:] = zero
        for i in range(n):
            top = z[i, 0]
            for c in range(1, n_classes):
                top = max(top, z[i, c])
            total = zero
            for c in range(n_classes):
                e = math.exp(z[i, c] - top)
                probs[i * n_classes + c] = e
                total += e
            log_total = math.log(total)
            for c in range(n_classes):
                log_p[i * n_classes + c] = z[i, c] - top - log_total
                probs[i * n_classes + c] /= total
            if y[i] < 0 or y[i] >= n_classes:  # no bounds checks here: memory, not an error
                raise IndexError("a label is outside [0, number of classes)")
            label[i * n_classes + y[i]] = one

    return softmax


def _make_net(activation_and_slope):
    def net(pred, label, w_pred, w_label, b1, w2, b2, a0, a1, out, slope):
        """Each class's net output and its slope d net / d pred into flat ``(n * C,)`` arrays."""
        for e in range(pred.size):  # the linear term (a0 + a1 y_c) q_c and the output bias
            coef = a0 + a1 * label[e]
            out[e] = b2 + coef * pred[e]
            slope[e] = coef
        for h in range(b1.shape[0]):  # one unit over every element: the loop vectorises
            bias, wp, wl, wo = b1[h], w_pred[h], w_label[h], w2[h]
            wo_wp = wo * wp
            for e in range(pred.size):
                a, s = activation_and_slope(bias + wp * pred[e] + wl * label[e])
                out[e] += wo * a
                slope[e] += wo_wp * s

    return net


def _make_backward(real):
    one, zero, softplus_threshold = real(1.0), real(0.0), real(20.0)

    def backward(out, slope, log_p, probs, y, inputs, anchored, scale, losses, grad):
        """Each sample's loss into ``losses``; ``scale`` x d loss / d z into ``grad``."""
        n, n_classes = grad.shape
        scale = real(scale)
        for i in range(n):
            row = i * n_classes
            g = zero
            for c in range(n_classes):
                g += out[row + c]
            if anchored:
                g -= log_p[row + y[i]]
                loss, d_g = max(g, zero), (scale if g > zero else zero)
            elif g > softplus_threshold:  # F.softplus is the identity above it
                loss, d_g = g, scale
            else:  # softplus and its slope, the sigmoid, from one exponential
                e = math.exp(-abs(g))
                loss = max(g, zero) + math.log1p(e)
                d_g = scale / (one + e) if g >= zero else scale * e / (one + e)
            losses[i] = loss
            d_sum = zero
            for c in range(n_classes):  # d loss / d log p_c, through the input transform
                d = slope[row + c] * d_g
                if inputs == 1:
                    d *= probs[row + c]
                elif inputs == 2:
                    d = zero
                if anchored and c == y[i]:
                    d -= d_g
                grad[i, c] = d
                d_sum += d
            for c in range(n_classes):  # through the softmax
                d = grad[i, c] - probs[row + c] * d_sum
                grad[i, c] = d + slope[row + c] * d_g if inputs == 2 else d

    return backward
