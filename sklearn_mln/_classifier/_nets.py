"""Default classifiers (an MLP and a small CNN) and their population forms.

A *population* is ``M`` independent copies of one architecture whose parameters are
stacked along a leading dimension. :func:`population_forward` runs all of them in one
autograd graph: batched matmuls for the MLP, per-member convolutions with a batched head
for the CNN, and ``torch.func.vmap`` over ``functional_call`` for any other module.
:func:`hand_differentiated_form` gives the MLP's forward with its backward written out,
which the training loop uses instead of autograd where it exists.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """Multi-layer perceptron on flattened input.

    Parameters
    ----------
    n_features : int
        Number of input features (inputs of any shape are flattened).
    n_classes : int
    hidden_sizes : tuple of int, default=(64,)

    Examples
    --------
    >>> import torch
    >>> from sklearn_mln import MLP
    >>> MLP(64, 10)(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """

    def __init__(self, n_features: int, n_classes: int, hidden_sizes=(64,)) -> None:
        super().__init__()
        sizes = [int(n_features), *map(int, hidden_sizes), int(n_classes)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, X: Tensor) -> Tensor:
        h = X.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h


class _MaxPool2x2(torch.autograd.Function):
    """``F.max_pool2d(h, 2)`` with the same values and gradients, faster on CPU.

    torch's CPU kernel spends most of its time finding the argmax of each window; two
    elementwise maxima over strided views give the values several times faster, and the
    index max_pool2d would pick (the first maximum in row-major order, so ties resolve the
    same way) is rebuilt from two comparisons only when a gradient is needed. The
    backward is torch's own ``max_pool2d_with_indices_backward``.
    """

    @staticmethod
    def forward(ctx, h: Tensor) -> Tensor:
        height, width = h.shape[-2:]
        x = h[..., : height // 2 * 2, : width // 2 * 2]
        left, right = x[..., 0::2], x[..., 1::2]
        pairs = torch.maximum(left, right)
        top, bottom = pairs[..., 0::2, :], pairs[..., 1::2, :]
        out = torch.maximum(top, bottom)
        if ctx.needs_input_grad[0]:
            second_col = left < right
            second_row = top < bottom
            col_top = second_col[..., 0::2, :]
            col = col_top ^ (second_row & (col_top ^ second_col[..., 1::2, :]))
            rows = torch.arange(0, height // 2 * 2, 2, device=h.device).unsqueeze(-1) * width
            cols = torch.arange(0, width // 2 * 2, 2, device=h.device)
            index = torch.add(rows + cols, second_row, alpha=width).add_(col)
            ctx.save_for_backward(h, index)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        h, index = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), h, [2, 2], [2, 2], [0, 0], [1, 1], False, index
        )


# the custom function has no vmap rule; a torch without this query always takes F.max_pool2d
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: True)


#: set while a caller differentiates through training (the fast pooling's backward is
#: differentiable once only)
_TWICE_DIFFERENTIABLE = contextvars.ContextVar("twice_differentiable", default=False)


@contextlib.contextmanager
def twice_differentiable():
    """Within the block, the nets' forward passes use only twice-differentiable kernels."""
    token = _TWICE_DIFFERENTIABLE.set(True)
    try:
        yield
    finally:
        _TWICE_DIFFERENTIABLE.reset(token)


def max_pool_2x2(h: Tensor) -> Tensor:
    """``F.max_pool2d(h, 2)`` for ``(N, C, H, W)`` input; same values and gradients."""
    if h.ndim != 4 or _transforms_active() or _TWICE_DIFFERENTIABLE.get():  # e.g. in vmap
        return F.max_pool2d(h, 2)
    return _MaxPool2x2.apply(h)


def _conv_block(h: Tensor) -> Tensor:
    # relu(max_pool(h)) == max_pool(relu(h)), values and gradients, on a quarter of the data
    return torch.relu(max_pool_2x2(h))


class SmallCNN(nn.Module):
    """Small convolutional net: (conv3x3 - ReLU - maxpool2) per entry of ``channels``, then linear.

    Parameters
    ----------
    in_channels : int
    n_classes : int
    image_size : tuple of int (height, width)
    channels : tuple of int, default=(8, 16)

    Examples
    --------
    >>> import torch
    >>> from sklearn_mln import SmallCNN
    >>> SmallCNN(1, 10, (28, 28))(torch.zeros(3, 1, 28, 28)).shape
    torch.Size([3, 10])
    """

    def __init__(self, in_channels: int, n_classes: int, image_size, channels=(8, 16)) -> None:
        super().__init__()
        height, width = map(int, image_size)
        convs, c_in = [], int(in_channels)
        for c_out in map(int, channels):
            convs.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
            c_in, height, width = c_out, height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(channels)} pools.")
        self.convs = nn.ModuleList(convs)
        self.fc = nn.Linear(c_in * height * width, int(n_classes))

    def forward(self, X: Tensor) -> Tensor:
        h = X
        for conv in self.convs:
            h = _conv_block(conv(h))
        return self.fc(h.flatten(1))


#: name -> (description, constructor keyword arguments) of the classifiers the package
#: trains (the benchmark's architectures); the CNNs need images (n, c, h, w)
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "cnn": ("SmallCNN, channels (8, 16): the default classifier evolution trains", {}),
    "mlp": ("MLP, one hidden layer of 64: the default for flat data", {"hidden_sizes": (64,)}),
    "cnn-wide": (
        "SmallCNN, channels (16, 32): never seen by evolution (transfer)",
        {"channels": (16, 32)},
    ),
    "mlp2": ("MLP, hidden layers (128, 64): never seen by evolution", {"hidden_sizes": (128, 64)}),
}


def architecture_factory(
    name: str, sample_shape: tuple[int, ...], n_classes: int
) -> Callable[[], nn.Module]:
    """A picklable zero-argument factory of architecture ``name`` of :data:`ARCHITECTURES`."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}.")
    kwargs = ARCHITECTURES[name][1]
    if name.startswith("cnn"):
        if len(sample_shape) != 3:
            raise ValueError(f"Architecture {name!r} needs images (c, h, w), got {sample_shape}.")
        return partial(SmallCNN, sample_shape[0], n_classes, sample_shape[1:], **kwargs)
    return partial(MLP, math.prod(sample_shape), n_classes, **kwargs)


def default_module_factory(
    sample_shape: tuple[int, ...], n_classes: int
) -> Callable[[], nn.Module]:
    """The default classifier for inputs of ``sample_shape``: CNN for images, MLP otherwise."""
    name = "cnn" if len(sample_shape) == 3 else "mlp"
    return architecture_factory(name, tuple(sample_shape), n_classes)


def resolve_module_factory(module, sample_shape, n_classes) -> Callable[[], nn.Module]:
    """A zero-argument callable that builds a fresh classifier.

    ``None`` gives the default (CNN for images, MLP otherwise); a class or callable is
    called with no arguments; a module instance is deep-copied and its layers re-drawn
    with ``reset_parameters``.
    """
    if module is None:
        return default_module_factory(tuple(sample_shape), n_classes)
    if isinstance(module, nn.Module):
        return _ResetCopy(module)
    if callable(module):
        return module
    raise TypeError(
        f"module must be None, a torch.nn.Module class, instance or factory; got {module!r}"
    )


class _ResetCopy:
    """Picklable factory: a copy of a module instance with freshly drawn weights."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self) -> nn.Module:
        fresh = copy.deepcopy(self.module)
        for layer in fresh.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        return fresh


# ----------------------------------------------------------------------------- population forms
def _mlp_forward(
    module: MLP, params: dict[str, Tensor], X: Tensor, shared: bool, inputs: list | None = None
) -> Tensor:
    """The population MLP's logits; ``inputs`` collects each layer's input on the way."""
    n_layers = len(module.layers)
    h = X.flatten(1) if shared else X.flatten(2)
    for i in range(n_layers):
        if inputs is not None:
            inputs.append(h)
        weight = params[f"layers.{i}.weight"]  # (M, out, in)
        bias = params[f"layers.{i}.bias"]  # (M, out)
        if h.ndim == 2:  # shared input (n, d): one matmul against all members at once
            h = torch.matmul(h, weight.transpose(1, 2)) + bias.unsqueeze(1)
        else:
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        if i < n_layers - 1:
            h = torch.relu(h)
    return h


def _cnn_forward(module: SmallCNN, params: dict[str, Tensor], X: Tensor, shared: bool) -> Tensor:
    # Convolutions run member by member: on CPU the per-member oneDNN kernels measured
    # faster than one grouped convolution (and than unfold + bmm) at these sizes, because
    # the CNN is compute-bound. The classifier head is batched.
    features = []
    for m in range(params["fc.weight"].shape[0]):
        h = X if shared else X[m]
        for i in range(len(module.convs)):
            h = F.conv2d(h, params[f"convs.{i}.weight"][m], params[f"convs.{i}.bias"][m], padding=1)
            h = _conv_block(h)
        features.append(h.flatten(1))
    h = torch.stack(features)  # (M, n, features)
    return torch.baddbmm(params["fc.bias"].unsqueeze(1), h, params["fc.weight"].transpose(1, 2))


_HAND_BATCHED = {MLP: _mlp_forward, SmallCNN: _cnn_forward}


def _mlp_forward_with_backward(
    module: MLP, params: dict[str, Tensor], X: Tensor
) -> tuple[Tensor, Callable[[Tensor], dict[str, Tensor]]]:
    # The same products as autograd's BaddbmmBackward and ReluBackward, in the same order
    # (the trained weights agree bit for bit), without the graph: on the population MLP
    # the engine's bookkeeping measured about a tenth of a step.
    n_layers = len(module.layers)
    inputs: list[Tensor] = []
    logits = _mlp_forward(module, params, X, shared=False, inputs=inputs)

    def backward(d_out: Tensor) -> dict[str, Tensor]:
        grads = {}
        for i in reversed(range(n_layers)):
            grads[f"layers.{i}.weight"] = torch.bmm(d_out.transpose(1, 2), inputs[i])
            grads[f"layers.{i}.bias"] = d_out.sum(1)
            if i > 0:
                d_in = torch.bmm(d_out, params[f"layers.{i}.weight"])
                d_out = torch.ops.aten.threshold_backward(d_in, inputs[i], 0)
        return grads

    return logits, backward


_HAND_DIFFERENTIATED = {MLP: _mlp_forward_with_backward}


def hand_differentiated_form(module: nn.Module) -> Callable | None:
    """``forward(module, params, X) -> (logits, backward)`` for ``module``'s architecture,
    or ``None`` where it has no hand-written backward (then autograd goes through
    :func:`population_forward`).

    ``forward`` gives the logits ``(M, n, C)`` of ``M`` stacked copies of ``module`` on
    their own rows ``X`` ``(M, n, ...)``, ``backward(d_logits)`` the gradient of each
    parameter ``{name: (M, ...)}``; ``params`` need not require gradients.
    """
    return _HAND_DIFFERENTIATED.get(type(module))


def _vmap_forward(module: nn.Module, params: dict[str, Tensor], X: Tensor, shared: bool) -> Tensor:
    from torch.func import functional_call, vmap

    buffers = dict(module.named_buffers())

    def one(member_params, x):
        return functional_call(module, (member_params, buffers), (x,))

    return vmap(one, in_dims=(0, None if shared else 0))(params, X)


def population_forward(
    module: nn.Module, params: dict[str, Tensor], X: Tensor, *, shared: bool
) -> Tensor:
    """Logits ``(M, n, C)`` of ``M`` stacked copies of ``module``.

    ``X`` is ``(n, ...)`` seen by every member when ``shared``, else ``(M, n, ...)``.
    """
    forward = _HAND_BATCHED.get(type(module), _vmap_forward)
    return forward(module, params, X, shared)


def supports_population(module: nn.Module, X_sample: Tensor) -> bool:
    """Whether ``module`` runs in population form, checked on a tiny batch ``X_sample``.

    Both forms are tried: rows shared by every member (prediction) and each member's own
    rows (training). A module with data-dependent control flow passes the first, where
    ``vmap`` sees no batched input, and fails the second.
    """
    if type(module) in _HAND_BATCHED:
        return True
    params = {
        k: v.detach().unsqueeze(0).repeat(2, *([1] * v.ndim)) for k, v in module.named_parameters()
    }
    # the second member gets other rows, so that a form mixing up members is caught
    own_rows = torch.stack([X_sample, X_sample.flip(0)])
    try:
        with torch.no_grad():
            shared = population_forward(module, params, X_sample, shared=True)
            per_member = population_forward(module, params, own_rows, shared=False)
            expected = torch.stack([module(rows) for rows in own_rows])
            shared_ok = torch.allclose(shared, expected[0].expand_as(shared), atol=1e-5, rtol=1e-4)
            return shared_ok and torch.allclose(per_member, expected, atol=1e-5, rtol=1e-4)
    except Exception:  # any failure means: use the per-classifier loop
        return False
