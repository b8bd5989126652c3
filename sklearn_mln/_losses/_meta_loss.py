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
  shared by every class, so the loss works for any number of classes. With
  ``true_class_input=True`` it is ``net([q_c, y_c, q_y])``: each class's term also sees the
  true class's prediction, so the shared net can express margins (``q_c - q_y``) and
  focal-like weights (a function of ``q_y``), still for any number of classes.
* ``progress_input=True``: the net also sees the training progress ``t`` (completed steps
  over total steps, in ``[0, 1)``), so a loss can change over training (anneal its
  smoothing, shift its emphasis). The inner loop and :class:`~sklearn_mln.MLNClassifier`
  set it; used as a plain criterion without it, the loss takes
  :data:`DEFAULT_PROGRESS`.
* ``shots_input=True``: the net also sees the size of the training set, as
  :func:`shots_feature` of the examples per class ``k`` (``1 / sqrt(k)``: 1 at one example
  per class, 0.32 at ten, towards 0 for large sets), so one loss can behave differently on
  one-shot and on fifty-shot data. The inner loop and :class:`~sklearn_mln.MLNClassifier`
  set it from the training labels; used as a plain criterion without it, the loss takes
  :data:`DEFAULT_SHOTS`.
* ``structure="joint"``: ``f(features) = net([q, y])``, one MLP over the whole
  prediction vector and label (``2 C`` inputs, fixed number of classes).
* ``anchor="cross_entropy"``: ``loss = relu(CE(z, y) + g)``; the output layer and the
  linear coefficients start at zero, so the network starts as exactly cross-entropy.
* ``anchor=None``: ``loss = softplus(g)``.

Both outputs are non-negative. The linear term makes label smoothing an exact point of
the anchored, log-prob search space (``a1 = eps``, ``a0 = -eps / C``; see
:meth:`MetaLossNetwork.from_label_smoothing`).

Around this module: the inner loop's CPU kernels (:mod:`sklearn_mln._losses._kernels`), the
file format (:mod:`sklearn_mln._losses._file`), the classical losses
(:mod:`sklearn_mln._losses._classical`) and turning what a user passes into a loss
(:mod:`sklearn_mln._losses._resolve`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._utils._validation import check_random_state
from ._file import read_loss_file, write_loss_file
from ._kernels import FusedPerClassLoss, PerClassLayout, fast_log_softmax

_N_LINEAR = 2  # a0, a1 of the linear term
#: the training progress a progress-input loss sees when nobody sets it: the loss it ends
#: training with
DEFAULT_PROGRESS = 1.0
#: the examples per class a shots-input loss assumes when nobody sets it
DEFAULT_SHOTS = 10.0
#: the architecture flags beyond version 0.1's (each one adds an input to the net)
INPUT_FLAGS = ("true_class_input", "progress_input", "shots_input")


def shots_feature(shots: float) -> float:
    """The input a shots-input network sees for ``shots`` examples per class: ``1/sqrt(k)``.

    Bounded in ``(0, 1]`` and spread over the k that matter for small data (1, 5, 10, 20,
    50 give 1, 0.45, 0.32, 0.22, 0.14), unlike ``1 / k``, which crowds k >= 10 near 0.
    """
    if not shots > 0:
        raise ValueError(f"shots (examples per class) must be positive, got {shots!r}.")
    return float(shots) ** -0.5


def examples_per_class(y) -> float:
    """Examples per class of a training set's labels: ``len(y)`` over the classes present."""
    y = y.reshape(-1) if isinstance(y, Tensor) else np.asarray(y).reshape(-1)
    n_classes = len(torch.unique(y)) if isinstance(y, Tensor) else len(np.unique(y))
    return len(y) / max(n_classes, 1)


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
    true_class_input: bool = False
    progress_input: bool = False
    shots_input: bool = False

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
        for flag in INPUT_FLAGS:
            value = getattr(self, flag)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{flag} must be a bool, got {value!r}.")
            object.__setattr__(self, flag, bool(value))
        if self.structure == "joint" and self.true_class_input:
            raise ValueError(
                'true_class_input is for structure="per_class"; a joint net already sees the '
                "whole prediction and label."
            )
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
        own = 2 * self.n_classes if self.structure == "joint" else 2 + self.true_class_input
        return own + self.progress_input + self.shots_input

    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(out_features, in_features)`` of each linear layer of the net."""
        sizes = [self.in_features, *self.hidden_sizes, 1]
        return [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]

    @property
    def n_params(self) -> int:
        return _N_LINEAR + sum(o * i + o for o, i in self.layer_shapes())

    def to_dict(self) -> dict:
        """The fields as plain values; the input flags only when set, so a file of an
        architecture that version 0.1 knows stays readable by it."""
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        for flag in INPUT_FLAGS:
            if not d[flag]:
                del d[flag]
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
    theta: Tensor,
    logits: Tensor,
    y: Tensor,
    spec: MetaLossSpec,
    *,
    fast: bool = False,
    progress: float | None = None,
    shots: float | None = None,
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
        Use the inner loop's CPU kernels (:mod:`sklearn_mln._losses._kernels`): a
        log-softmax that can differ from torch's in the last bit, and, for a per-class
        network whose ``theta`` needs no gradient, the network's input gradient computed
        in the forward pass.
        Off, an anchored network at its start is cross-entropy bit for bit.
    progress : float or None, default=None
        Training progress in ``[0, 1]``, seen by a ``progress_input`` network;
        ``None`` means :data:`DEFAULT_PROGRESS`. Ignored by other networks.
    shots : float or None, default=None
        Examples per class of the training set, seen by a ``shots_input`` network (as
        :func:`shots_feature`); ``None`` means :data:`DEFAULT_SHOTS`.

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
    if fast:
        fused = _fused(
            theta, logits, y, spec, exact=False, mean=False, progress=progress, shots=shots
        )
        if fused is not None:
            return fused
    theta = theta.to(logits.dtype)
    log_probs = fast_log_softmax(logits) if fast else F.log_softmax(logits, -1)
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
    g = g + _network_output(pred, onehot, layers, spec, progress, shots)

    if spec.anchor == "cross_entropy":
        cross_entropy = -(onehot * log_probs).sum(-1)
        return torch.relu(cross_entropy + g)
    return F.softplus(g)


@lru_cache(maxsize=64)
def _layout(spec: MetaLossSpec) -> PerClassLayout | None:
    """The fused kernel's view of ``spec``, or ``None`` where it does not apply."""
    if spec.structure != "per_class" or spec.true_class_input:
        return None
    anchored = spec.anchor == "cross_entropy"
    return PerClassLayout(tuple(spec.layer_shapes()), spec.activation, spec.inputs, anchored)


def _task_inputs(spec: MetaLossSpec, progress: float | None, shots: float | None):
    """The constant inputs after ``[q_c, y_c]``: training progress, then the shots feature."""
    task = (DEFAULT_PROGRESS if progress is None else float(progress),) * spec.progress_input
    if spec.shots_input:
        task += (shots_feature(DEFAULT_SHOTS if shots is None else shots),)
    return task


def _fused(theta, logits, y, spec, *, exact, mean, progress, shots) -> Tensor | None:
    """:class:`FusedPerClassLoss` of a per-class network, ``None`` for other networks."""
    layout = _layout(spec)
    if layout is None:
        return None
    task = _task_inputs(spec, progress, shots)

    def reference(logits: Tensor, theta: Tensor) -> Tensor:
        batch = logits.unsqueeze(0) if logits.ndim == 2 else logits
        out = meta_loss_per_sample(theta, batch, y, spec, progress=progress, shots=shots)
        out = out.mean(-1) if mean else out
        return out.squeeze(0) if logits.ndim == 2 else out

    return FusedPerClassLoss.apply(logits, theta, y, layout, task, exact, mean, reference)


def _network_output(
    pred: Tensor,
    onehot: Tensor,
    layers: list[tuple[Tensor, Tensor]],
    spec: MetaLossSpec,
    progress: float | None = None,
    shots: float | None = None,
) -> Tensor:
    """``f(features)`` of every sample, ``(P, n)``, through plain autograd."""
    n_pop, n_samples, n_classes = pred.shape
    t = DEFAULT_PROGRESS if progress is None else float(progress)
    task = [t] * spec.progress_input
    task += [shots_feature(DEFAULT_SHOTS if shots is None else shots)] * spec.shots_input
    if spec.structure == "per_class":
        features = [pred, onehot]
        if spec.true_class_input:
            features.append((pred * onehot).sum(-1, keepdim=True).expand_as(pred))
        features += [torch.full_like(pred, value) for value in task]
        h = torch.stack(features, dim=-1).reshape(n_pop, n_samples * n_classes, len(features))
    else:
        parts = [pred, onehot] + [torch.full_like(pred[..., :1], value) for value in task]
        h = torch.cat(parts, dim=-1)
    act = ACTIVATIONS[spec.activation]
    for i, (weight, bias) in enumerate(layers):
        h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        if i < len(layers) - 1:
            h = act(h)
    out = h.squeeze(-1)
    if spec.structure == "per_class":
        out = out.reshape(n_pop, n_samples, n_classes).sum(-1)
    return out


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
    true_class_input : bool, default=False
        ``"per_class"`` only: each class's net also sees the true class's prediction
        ``q_y`` (margin- and focal-like shapes). Saved files then use format version 2.
    progress_input : bool, default=False
        The net also sees how far training has got (:attr:`progress`, from 0 to 1): a loss
        that changes over training. Saved files then use format version 2.
    shots_input : bool, default=False
        The net also sees the size of the training set, :attr:`shots` examples per class
        (a loss that adapts to one-shot or fifty-shot data). Saved files then use format
        version 3.
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
    progress : float or None
        Training progress in ``[0, 1]`` a ``progress_input`` network sees; set by the
        inner loop and by :class:`~sklearn_mln.MLNClassifier` (each epoch) -- set it in
        your own training loop. ``None`` (the default) means :data:`DEFAULT_PROGRESS`.
    shots : float or None
        Examples per class of the training set a ``shots_input`` network sees; set by the
        inner loop and by :class:`~sklearn_mln.MLNClassifier` (from ``y`` at ``fit``) --
        set it in your own training loop (:func:`examples_per_class` of the training
        labels). ``None`` (the default) means :data:`DEFAULT_SHOTS`.

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
        true_class_input: bool = False,
        progress_input: bool = False,
        shots_input: bool = False,
        random_state=None,
    ) -> None:
        super().__init__()
        self.spec = MetaLossSpec(
            structure,
            n_classes,
            hidden_sizes,
            activation,
            inputs,
            anchor,
            true_class_input,
            progress_input,
            shots_input,
        )
        theta = init_flat_params(self.spec, check_random_state(random_state))
        self.theta = nn.Parameter(torch.as_tensor(theta, dtype=torch.float64))
        self.metadata: dict = {}
        self.progress: float | None = None
        self.shots: float | None = None

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
        told = {"progress": self.progress, "shots": self.shots}
        out = _fused(theta, flat_logits, flat_y, self.spec, exact=True, mean=False, **told)
        if out is None:
            out = meta_loss_per_sample(theta, flat_logits, flat_y, self.spec, **told)
        return out.reshape(*lead, logits.shape[-2])

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        if logits.ndim != 2 or y.ndim != 1 or logits.shape[0] != y.shape[0]:
            raise ValueError(
                f"Expected logits (n, C) and labels (n,), got {tuple(logits.shape)} and "
                f"{tuple(y.shape)}."
            )
        y = y.long()
        theta = self.theta.to(logits.device).unsqueeze(0)
        told = {"progress": self.progress, "shots": self.shots}
        out = _fused(theta, logits, y, self.spec, exact=True, mean=True, **told)
        return self.per_sample(logits, y).mean() if out is None else out

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"structure={s.structure!r}, n_classes={s.n_classes}, hidden_sizes={s.hidden_sizes}, "
            f"activation={s.activation!r}, inputs={s.inputs!r}, anchor={s.anchor!r}"
            + ", true_class_input=True" * s.true_class_input
            + ", progress_input=True" * s.progress_input
            + ", shots_input=True" * s.shots_input
        )

    def save(self, path) -> None:
        """Save architecture, weights and metadata to ``path`` (no pickle).

        The file is a NumPy ``.npz`` archive holding the float64 weights and a JSON header;
        it is written atomically.
        """
        write_loss_file(path, self.spec.to_dict(), self.get_flat_params(), self.metadata)


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
    spec, theta, metadata = read_loss_file(path)
    try:
        spec = MetaLossSpec(**spec)
    except TypeError as exc:
        raise ValueError(f"{str(path)!r} has an invalid architecture header: {exc}") from exc
    if theta.shape != (spec.n_params,):
        raise ValueError(
            f"{str(path)!r} holds {theta.shape} weights; its architecture needs ({spec.n_params},)."
        )
    net = MetaLossNetwork.from_spec(spec, theta)
    net.metadata = dict(metadata or {})
    return net
