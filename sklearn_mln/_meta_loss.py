"""The meta-loss network: a loss function that is a small neural network.

One functional core, :func:`meta_loss_per_sample`, evaluates a whole population of
candidate losses at once (parameters with a leading population dimension).
:class:`MetaLossNetwork` is that core with a single parameter vector, wrapped as a
:class:`torch.nn.Module` with the call convention of :class:`torch.nn.CrossEntropyLoss`.

Parametrisation (the paper does not publish its exact architecture; this is ours)
---------------------------------------------------------------------------------
For a sample with logits ``z`` (``C`` classes), one-hot label ``y`` and prediction
``q`` (``probs``, ``log_probs`` or ``logits`` of ``z``, chosen by ``inputs``)::

    g = sum_c (a0 + a1 * y_c) * q_c  +  f(features)

* ``structure="per_class"``: ``f(features) = sum_c net([q_c, y_c])``, one small MLP
  shared by every class, so the loss works for any number of classes.
* ``structure="joint"``: ``f(features) = net([q, y])``, one MLP over the whole
  prediction vector and label (``2 C`` inputs, fixed number of classes).
* ``anchor="cross_entropy"``: ``loss = relu(CE(z, y) + g)``; the output layer and the
  linear coefficients start at zero, so the network starts as exactly cross-entropy.
* ``anchor=None``: ``loss = softplus(g)``.

Both outputs are non-negative. The linear term makes label smoothing an exact point of
the anchored, log-prob search space (``a1 = eps``, ``a0 = -eps / C``; see
:meth:`MetaLossNetwork.from_label_smoothing`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._archive import read_archive, write_archive
from ._validation import check_random_state

FORMAT_NAME = "sklearn-mln-meta-loss"
FORMAT_VERSION = 1
_N_LINEAR = 2  # a0, a1 of the linear term

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "gelu": F.gelu,
}
STRUCTURES = ("per_class", "joint")
INPUTS = ("probs", "log_probs", "logits")
ANCHORS = (None, "cross_entropy")


@dataclass(frozen=True)
class MetaLossSpec:
    """Architecture of a meta-loss network (everything but its weights)."""

    structure: str = "per_class"
    n_classes: int | None = None
    hidden_sizes: tuple[int, ...] = (8,)
    activation: str = "tanh"
    inputs: str = "log_probs"
    anchor: str | None = "cross_entropy"

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}.")
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {self.inputs!r}.")
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {self.anchor!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}."
            )
        if self.n_classes is not None and (
            not isinstance(self.n_classes, (int, np.integer)) or self.n_classes < 2
        ):
            raise ValueError(f"n_classes must be an integer >= 2 or None, got {self.n_classes!r}.")
        if self.structure == "joint" and self.n_classes is None:
            raise ValueError('structure="joint" needs n_classes (its input size is 2 * n_classes).')
        hidden = tuple(self.hidden_sizes)
        if any(not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes!r}.")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in hidden))
        if self.n_classes is not None:
            object.__setattr__(self, "n_classes", int(self.n_classes))

    @property
    def in_features(self) -> int:
        return 2 if self.structure == "per_class" else 2 * self.n_classes

    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(out_features, in_features)`` of each linear layer of the net."""
        sizes = [self.in_features, *self.hidden_sizes, 1]
        return [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]

    @property
    def n_params(self) -> int:
        return _N_LINEAR + sum(o * i + o for o, i in self.layer_shapes())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d


def _unflatten(theta: Tensor, spec: MetaLossSpec) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Split ``theta`` of shape ``(P, n_params)`` into the linear term and layer views."""
    linear = theta[:, :_N_LINEAR]
    layers, pos = [], _N_LINEAR
    for out_f, in_f in spec.layer_shapes():
        weight = theta[:, pos : pos + out_f * in_f].reshape(-1, out_f, in_f)
        pos += out_f * in_f
        bias = theta[:, pos : pos + out_f]
        pos += out_f
        layers.append((weight, bias))
    return linear, layers


def meta_loss_per_sample(
    theta: Tensor, logits: Tensor, y: Tensor, spec: MetaLossSpec, *, fast: bool = False
) -> Tensor:
    """Per-sample losses of a population of meta-loss networks.

    Parameters
    ----------
    theta : Tensor of shape (P, n_params)
        One flat parameter vector per candidate loss.
    logits : Tensor of shape (P, n, C)
        Member ``p``'s classifier output, scored by candidate ``p``.
    y : int64 Tensor of shape (n,) or (P, n)
        True class indices.
    spec : MetaLossSpec
    fast : bool, default=False
        Use the inner loop's CPU kernels: a log-softmax that can differ from torch's in the
        last bit, and, for a per-class network whose ``theta`` needs no gradient, the
        network's input gradient computed in the forward pass (:class:`_PerClassNetwork`).
        Off, an anchored network at its start is cross-entropy bit for bit.

    Returns
    -------
    Tensor of shape (P, n), non-negative.
    """
    n_pop, n_samples, n_classes = logits.shape
    if spec.structure == "joint" and n_classes != spec.n_classes:
        raise ValueError(
            f"This joint meta-loss was built for {spec.n_classes} classes, got logits with "
            f"{n_classes} columns; use structure='per_class' for any number of classes."
        )
    theta = theta.to(logits.dtype)
    log_probs = _fast_log_softmax(logits) if fast else F.log_softmax(logits, -1)
    onehot = F.one_hot(y, n_classes).to(logits.dtype).expand_as(logits)
    if spec.inputs == "log_probs":
        pred = log_probs
    elif spec.inputs == "probs":
        pred = log_probs.exp()
    else:
        pred = logits

    linear, layers = _unflatten(theta, spec)
    coef = linear[:, 0, None, None] + linear[:, 1, None, None] * onehot
    g = (coef * pred).sum(-1)

    if fast and spec.structure == "per_class" and not theta.requires_grad and pred.requires_grad:
        g = g + _PerClassNetwork.apply(pred, onehot, layers, spec.activation)
    else:
        g = g + _network_output(pred, onehot, layers, spec)

    if spec.anchor == "cross_entropy":
        cross_entropy = -(onehot * log_probs).sum(-1)
        return torch.relu(cross_entropy + g)
    return F.softplus(g)


def _fast_log_softmax(logits: Tensor) -> Tensor:
    """``F.log_softmax(logits, -1)``, several times faster for a few classes on CPU.

    torch's kernel is slow when the last dimension is short (10 classes); the same value
    from elementwise ops and one short reduction is 3-4x faster, forward and backward.
    """
    shifted = logits - logits.detach().amax(-1, keepdim=True)
    return shifted - shifted.exp().sum(-1, keepdim=True).log()


def _network_output(
    pred: Tensor, onehot: Tensor, layers: list[tuple[Tensor, Tensor]], spec: MetaLossSpec
) -> Tensor:
    """``f(features)`` of every sample, ``(P, n)``, through plain autograd."""
    n_pop, n_samples, n_classes = pred.shape
    if spec.structure == "per_class":
        h = torch.stack((pred, onehot), dim=-1).reshape(n_pop, n_samples * n_classes, 2)
    else:
        h = torch.cat((pred, onehot), dim=-1)
    act = ACTIVATIONS[spec.activation]
    for i, (weight, bias) in enumerate(layers):
        h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        if i < len(layers) - 1:
            h = act(h)
    out = h.squeeze(-1)
    if spec.structure == "per_class":
        out = out.reshape(n_pop, n_samples, n_classes).sum(-1)
    return out


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
_ACTIVATIONS_AND_SLOPES: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
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
    act_and_slope = _ACTIVATIONS_AND_SLOPES[activation]
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


class _PerClassNetwork(torch.autograd.Function):
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


def init_flat_params(spec: MetaLossSpec, random_state: np.random.RandomState) -> np.ndarray:
    """Initial parameter vector; anchored networks start as exactly cross-entropy."""
    parts = [np.zeros(_N_LINEAR)]
    shapes = spec.layer_shapes()
    for i, (out_f, in_f) in enumerate(shapes):
        is_output = i == len(shapes) - 1
        if is_output and spec.anchor is not None:
            weight = np.zeros((out_f, in_f))
        else:
            weight = random_state.normal(0.0, 1.0 / np.sqrt(in_f), size=(out_f, in_f))
        parts += [weight.ravel(), np.zeros(out_f)]
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- classical losses
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


# ----------------------------------------------------------------------------- the module
class MetaLossNetwork(nn.Module):
    """A loss function that is a small neural network (a meta-loss network, MLN).

    It maps a classifier's logits and the true labels to a non-negative scalar, with the
    call convention of :class:`torch.nn.CrossEntropyLoss`: ``loss(logits, y)`` where
    ``logits`` is ``(n, C)`` float and ``y`` is ``(n,)`` int64. Its parameters are one flat
    vector, which is what evolution searches over.

    Parameters
    ----------
    n_classes : int or None, default=None
        Number of classes. Required for ``structure="joint"``; for ``"per_class"`` it only
        records what the loss was evolved for (it accepts any number of classes).
    structure : {"per_class", "joint"}, default="per_class"
        ``"per_class"``: one small net applied to each ``(prediction_c, label_c)`` pair and
        summed over classes. ``"joint"``: one net over the whole prediction vector
        concatenated with the one-hot label.
    hidden_sizes : tuple of int, default=(8,)
        Widths of the hidden layers of the net.
    activation : {"tanh", "relu", "sigmoid", "softplus", "gelu"}, default="tanh"
    inputs : {"log_probs", "probs", "logits"}, default="log_probs"
        Which view of the classifier's output the net sees.
    anchor : {"cross_entropy", None}, default="cross_entropy"
        With ``"cross_entropy"`` the loss is ``relu(CE + residual)`` and starts as exactly
        cross-entropy; with ``None`` it is ``softplus(net output)``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights of the hidden layers. ``None`` draws them from fresh
        operating-system entropy; NumPy's global generator is never used.

    Attributes
    ----------
    spec : MetaLossSpec
        The architecture.
    metadata : dict
        Free-form provenance (how it was evolved, fitness, ...); saved with the weights.
    n_params : int
        Length of the flat parameter vector.

    See Also
    --------
    load_meta_loss : Load a saved meta-loss network.
    MLNEvolver : Evolve the parameters with CMA-ES.

    Examples
    --------
    >>> import torch
    >>> from sklearn_mln import MetaLossNetwork
    >>> mln = MetaLossNetwork(random_state=0)
    >>> logits, y = torch.randn(4, 10), torch.tensor([0, 3, 9, 1])
    >>> bool(torch.isclose(mln(logits, y), torch.nn.functional.cross_entropy(logits, y)))
    True
    >>> mln.n_params
    35
    """

    def __init__(
        self,
        n_classes: int | None = None,
        *,
        structure: str = "per_class",
        hidden_sizes: tuple[int, ...] = (8,),
        activation: str = "tanh",
        inputs: str = "log_probs",
        anchor: str | None = "cross_entropy",
        random_state=None,
    ) -> None:
        super().__init__()
        self.spec = MetaLossSpec(structure, n_classes, hidden_sizes, activation, inputs, anchor)
        theta = init_flat_params(self.spec, check_random_state(random_state))
        self.theta = nn.Parameter(torch.as_tensor(theta, dtype=torch.float64))
        self.metadata: dict = {}

    @classmethod
    def from_spec(
        cls, spec: MetaLossSpec, theta: np.ndarray | None = None, *, random_state=None
    ) -> MetaLossNetwork:
        """Build a network from a :class:`MetaLossSpec` and optional flat parameters.

        Without ``theta`` the weights are drawn as in the constructor, from
        ``random_state``.
        """
        if theta is None:
            return cls(**spec.to_dict(), random_state=random_state)
        net = cls(**spec.to_dict(), random_state=np.random.RandomState(0))
        return net.set_flat_params(theta)

    @classmethod
    def from_label_smoothing(cls, n_classes: int, smoothing: float = 0.1, **kwargs):
        """An anchored log-prob network that equals label smoothing exactly.

        Examples
        --------
        >>> import torch
        >>> from sklearn_mln import MetaLossNetwork
        >>> mln = MetaLossNetwork.from_label_smoothing(10, 0.1, random_state=0)
        >>> z, y = torch.randn(5, 10), torch.arange(5)
        >>> ref = torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1)
        >>> bool(torch.isclose(mln(z, y), ref))
        True
        """
        kwargs.setdefault("inputs", "log_probs")
        kwargs.setdefault("anchor", "cross_entropy")
        if kwargs["inputs"] != "log_probs" or kwargs["anchor"] != "cross_entropy":
            raise ValueError("Label smoothing is an exact point only with log_probs + anchor.")
        net = cls(n_classes, **kwargs)
        theta = net.get_flat_params()
        theta[:_N_LINEAR] = (-smoothing / n_classes, smoothing)
        net.set_flat_params(theta)
        return net

    @property
    def n_params(self) -> int:
        return self.spec.n_params

    def get_flat_params(self) -> np.ndarray:
        """The parameters as one float64 vector (a copy)."""
        return self.theta.detach().cpu().numpy().astype(np.float64, copy=True)

    def set_flat_params(self, vector) -> MetaLossNetwork:
        """Set the parameters from one vector of length :attr:`n_params`."""
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.n_params,):
            raise ValueError(f"Expected a vector of shape ({self.n_params},), got {vector.shape}.")
        if not np.all(np.isfinite(vector)):
            raise ValueError("Meta-loss parameters must be finite.")
        with torch.no_grad():
            self.theta.copy_(torch.as_tensor(vector, dtype=torch.float64))
        return self

    def per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        """Per-sample losses; ``logits`` ``(..., n, C)``, ``y`` ``(n,)`` or ``(..., n)``."""
        lead = logits.shape[:-2]
        flat_logits = logits.reshape(-1, *logits.shape[-2:])
        flat_y = y.expand(*lead, y.shape[-1]).reshape(-1, y.shape[-1]) if lead else y
        theta = self.theta.to(logits.device).expand(flat_logits.shape[0], -1)
        return meta_loss_per_sample(theta, flat_logits, flat_y, self.spec).reshape(
            *lead, logits.shape[-2]
        )

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        if logits.ndim != 2 or y.ndim != 1 or logits.shape[0] != y.shape[0]:
            raise ValueError(
                f"Expected logits (n, C) and labels (n,), got {tuple(logits.shape)} and "
                f"{tuple(y.shape)}."
            )
        return self.per_sample(logits, y.long()).mean()

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"structure={s.structure!r}, n_classes={s.n_classes}, hidden_sizes={s.hidden_sizes}, "
            f"activation={s.activation!r}, inputs={s.inputs!r}, anchor={s.anchor!r}"
        )

    def save(self, path) -> None:
        """Save architecture, weights and metadata to ``path`` (no pickle).

        The file is a NumPy ``.npz`` archive holding the float64 weights and a JSON header;
        it is written atomically.
        """
        from ._version import __version__

        header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "spec": self.spec.to_dict(),
            "n_params": self.n_params,
            "metadata": self.metadata,
        }
        write_archive(path, header, {"theta": self.get_flat_params()})


def load_meta_loss(path) -> MetaLossNetwork:
    """Load a :class:`MetaLossNetwork` saved with :meth:`MetaLossNetwork.save`.

    No code from the file is executed: it is read with ``numpy.load(allow_pickle=False)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is truncated, corrupt, of another format or version, or its weights do
        not match its architecture.

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn_mln import MetaLossNetwork, load_meta_loss
    >>> path = os.path.join(tempfile.mkdtemp(), "loss.mln")
    >>> MetaLossNetwork(random_state=0).save(path)
    >>> load_meta_loss(path).n_params
    35
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No meta-loss file at {str(path)!r}.")
    header, arrays = read_archive(path, FORMAT_NAME, FORMAT_VERSION, "meta-loss")
    try:
        theta = np.asarray(arrays["theta"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{str(path)!r} is not a readable meta-loss file (truncated or corrupt?): {exc}"
        ) from exc
    try:
        spec = MetaLossSpec(
            **{**header["spec"], "hidden_sizes": tuple(header["spec"]["hidden_sizes"])}
        )
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{str(path)!r} has an invalid architecture header: {exc}") from exc
    if theta.shape != (spec.n_params,):
        raise ValueError(
            f"{str(path)!r} holds {theta.shape} weights; its architecture needs ({spec.n_params},)."
        )
    net = MetaLossNetwork.from_spec(spec, theta)
    net.metadata = dict(header.get("metadata") or {})
    return net


def frozen_copy(loss: nn.Module) -> nn.Module:
    """A copy of ``loss`` whose parameters do not require gradients."""
    import copy

    loss = copy.deepcopy(loss)
    for p in loss.parameters():
        p.requires_grad_(False)
    return loss


def resolve_loss(meta_loss) -> nn.Module:
    """Turn what a user passes as ``meta_loss`` into a frozen loss module.

    Accepts a classical loss name, a :class:`MetaLossNetwork` or :class:`ClassicalLoss`, a
    path to a saved meta-loss, a fitted evolver (anything with ``meta_loss_``), or the name
    of a shipped pretrained loss.
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
        from .pretrained import PRETRAINED, load_pretrained

        if isinstance(meta_loss, str) and meta_loss in PRETRAINED:
            return frozen_copy(load_pretrained(meta_loss))
        if Path(meta_loss).is_file():
            return frozen_copy(load_meta_loss(meta_loss))
        raise ValueError(
            f"meta_loss={meta_loss!r} is neither a classical loss {sorted(CLASSICAL_LOSSES)}, "
            f"a pretrained loss {sorted(PRETRAINED)}, nor an existing file."
        )
    if hasattr(meta_loss, "fit") and hasattr(meta_loss, "get_params"):
        raise ValueError("The evolver passed as meta_loss is not fitted; call fit first.")
    raise TypeError(
        "meta_loss must be a loss name, a MetaLossNetwork, a path to a saved one or a fitted "
        f"MLNEvolver; got {type(meta_loss).__name__}."
    )
