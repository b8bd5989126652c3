"""Inner loop: train small classifiers from scratch on tasks with a given loss, then score them.

Two implementations that agree to float tolerance from the same seeds:

* :func:`score_reference`: one classifier at a time, ``nn.Module`` + ``torch.optim.SGD``
  (the readable reference);
* :func:`score_population`: every (candidate loss, task) pair trains at once, parameters
  stacked along a leading *member* dimension, one backward pass per SGD step (written
  out for the MLP, autograd for other modules).

Members are ordered candidate-major: member ``m`` is candidate ``m // n_tasks`` on task
``m % n_tasks``. Every candidate sees the same tasks and the same initial weights
(common random numbers).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from .._classifier._nets import hand_differentiated_form, population_forward
from .._losses._meta_loss import MetaLossSpec, examples_per_class, meta_loss_per_sample
from ._tasks import Task

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]
#: activations (floats) a population pass may hold at once; sets pass and chunk sizes.
#: 32 MiB keeps a large CNN generation's peak memory low without slowing it (larger budgets
#: were no faster; benchmarks/bench_memory.py measures the peak memory).
MEMORY_BUDGET_FLOATS = 2**23


@dataclass(frozen=True)
class InnerConfig:
    """How each small classifier is built and trained: full-batch SGD with momentum."""

    module_factory: Callable[[], nn.Module]
    lr: float = 0.03
    steps: int = 100
    momentum: float = 0.9
    device: str = "cpu"


@dataclass(frozen=True)
class TaskBatch:
    """The tasks of one evaluation, materialised (small: only the tasks' own rows).

    ``y_val[t]`` holds task ``t``'s labels of the shared validation rows, ``-1`` for rows
    that do not count for it (classes outside the task, or the task's own training rows).
    """

    X_train: np.ndarray  # (T, n, ...)
    y_train: np.ndarray  # (T, n)
    y_val: np.ndarray  # (T, V)
    init_seeds: np.ndarray  # (T,)

    @property
    def n_tasks(self) -> int:
        return len(self.init_seeds)

    def take(self, index: slice) -> TaskBatch:
        """The tasks ``index`` of this batch."""
        return TaskBatch(
            self.X_train[index], self.y_train[index], self.y_val[index], self.init_seeds[index]
        )


def make_task_batch(
    tasks: Sequence[Task],
    init_seeds: Sequence[int],
    X_source: np.ndarray,
    y_source: np.ndarray,
    y_val: np.ndarray,
    *,
    val_is_source: bool = False,
) -> TaskBatch:
    """Gather the tasks' rows; with ``val_is_source`` each task's own rows leave its validation."""
    y_val_tasks = []
    for task in tasks:
        labels = task.relabel(y_val)
        if val_is_source:
            labels[task.train_indices] = -1
        y_val_tasks.append(labels)
    return TaskBatch(
        X_train=np.stack([X_source[t.train_indices] for t in tasks]).astype(np.float32),
        y_train=np.stack([t.relabel(y_source[t.train_indices]) for t in tasks]),
        y_val=np.stack(y_val_tasks),
        init_seeds=np.asarray(init_seeds),
    )


def to_tensor(array: np.ndarray | Tensor, device: str) -> Tensor:
    """A tensor sharing ``array``'s memory where it can, read-only arrays included.

    Read-only arrays are joblib's memmaps of the validation set: copying one per pass made
    every worker's memory grow by its size again and again. The library never writes into
    these tensors, so torch's warning about non-writable arrays does not apply.
    """
    if isinstance(array, Tensor):
        return array.to(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(array, device=device)


def make_module(module_factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a classifier with weights drawn from ``seed``, leaving torch's global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return module_factory()


def _accuracy(pred: Tensor, y_task: Tensor) -> tuple[float, bool]:
    """Accuracy on the rows that count for the task, and whether predictions collapsed."""
    mask = y_task >= 0
    pred = pred[mask]
    collapsed = bool((pred == pred[0]).all()) if len(pred) > 1 else False
    return float((pred == y_task[mask]).float().mean()), collapsed


# ----------------------------------------------------------------------------- reference loop
def train_reference(
    module: nn.Module,
    X: Tensor,
    y: Tensor,
    loss: nn.Module,
    *,
    lr: float,
    steps: int,
    momentum: float,
) -> bool:
    """Full-batch SGD on one classifier in place; returns whether the loss went non-finite.

    A meta-loss is told the training progress before each step and the examples per class
    of ``y``, and left as it was after.
    """
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum)
    tells_progress = hasattr(loss, "progress")  # a meta-loss: it may take progress as input
    previous = loss.progress if tells_progress else None
    previous_shots = getattr(loss, "shots", None)
    if hasattr(loss, "shots"):
        loss.shots = examples_per_class(y)
    try:
        for step in range(steps):
            if tells_progress:
                loss.progress = step / steps
            optimizer.zero_grad()
            value = loss(module(X), y)
            if not torch.isfinite(value):
                return True
            value.backward()
            optimizer.step()
    finally:
        if tells_progress:
            loss.progress = previous
        if hasattr(loss, "shots"):
            loss.shots = previous_shots
    return False


def score_reference(
    losses: Sequence[nn.Module], config: InnerConfig, batch: TaskBatch, X_val: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(n_losses, n_tasks)`` and failure flags, one classifier at a time.

    The accuracy is what the classifier really scored, failed or not; a failure is a loss
    or gradient that went non-finite, or predictions collapsed to one class.
    """
    acc = np.zeros((len(losses), batch.n_tasks))
    failed = np.zeros((len(losses), batch.n_tasks), dtype=bool)
    X_val_t = to_tensor(X_val, config.device).float()
    template, params = init_population(config.module_factory, batch.init_seeds[:1], config.device)
    # measured as predictions run: in eval mode (batch norm then takes a single sample)
    floats_per_sample = activation_floats(template.eval(), params, X_val_t)
    for t in range(batch.n_tasks):
        X = to_tensor(batch.X_train[t], config.device)
        y = to_tensor(batch.y_train[t], config.device)
        y_val = to_tensor(batch.y_val[t], config.device)
        for p, loss in enumerate(losses):
            module = make_module(config.module_factory, batch.init_seeds[t]).to(config.device)
            failed[p, t] = train_reference(
                module,
                X,
                y,
                loss.to(config.device),
                lr=config.lr,
                steps=config.steps,
                momentum=config.momentum,
            )
            module.eval()
            pred = _predict_chunked(
                lambda xb, m=module: m(xb).unsqueeze(0), X_val_t, 1, floats_per_sample
            )[0]
            acc[p, t], collapsed = _accuracy(pred, y_val)
            failed[p, t] |= collapsed or not np.isfinite(acc[p, t])
    return acc, failed


# ----------------------------------------------------------------------------- population path
def init_population(
    module_factory: Callable[[], nn.Module], init_seeds: Sequence[int], device: str = "cpu"
) -> tuple[nn.Module, dict[str, Tensor]]:
    """A template module and the initial weights of each seed, stacked: ``{name: (T, ...)}``."""
    modules = [make_module(module_factory, s).to(device) for s in init_seeds]
    stacked = {
        name: torch.stack([dict(m.named_parameters())[name].detach() for m in modules])
        for name, _ in modules[0].named_parameters()
    }
    return modules[0], stacked


def train_population(
    module: nn.Module,
    params: dict[str, Tensor],
    X: Tensor,
    y: Tensor,
    per_sample_loss: PerSampleLoss,
    *,
    lr: float,
    steps: int,
    momentum: float,
    checkpoints: Collection[int] = (),
    on_checkpoint: Callable[[int, dict[str, Tensor], Tensor], None] | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Full-batch SGD on ``M`` stacked classifiers at once.

    ``X`` is ``(M, n, ...)``, ``y`` ``(M, n)``. The members are independent, so the gradient
    of the summed loss is each member's own gradient, and a member whose loss goes
    non-finite only poisons its own weights. The update is ``torch.optim.SGD``'s, op for op.
    Returns the trained weights and a ``(M,)`` flag of members whose loss or weights went
    non-finite. After each step count in ``checkpoints`` (below ``steps``),
    ``on_checkpoint(step, weights, failed)`` sees the weights so far: one run scores every
    step count of a grid, exactly as separate runs would. A ``per_sample_loss`` with a
    ``set_progress`` attribute (a progress-input meta-loss) is told the training progress,
    completed steps over ``steps``, before each step, and ``None`` (its default) after the
    last, so no loss object keeps a training's progress. Likewise ``set_shots`` is told
    the examples per class of the members' training sets (the members of a pass share
    their size).
    """
    hand_written = hand_differentiated_form(module)
    params = {k: v.detach().clone().requires_grad_(hand_written is None) for k, v in params.items()}
    weights = list(params.values())
    buffers = [torch.zeros_like(w) for w in weights]
    failed = torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
    set_progress = getattr(per_sample_loss, "set_progress", None)
    set_shots = getattr(per_sample_loss, "set_shots", None)
    if set_shots is not None:
        set_shots(examples_per_class(y[0]))
    try:
        for step in range(1, steps + 1):
            if set_progress is not None:
                set_progress((step - 1) / steps)
            if hand_written:  # autograd for the loss only, the classifier's backward by hand
                with torch.no_grad():
                    logits, backward = hand_written(module, params, X)
                logits.requires_grad_(True)
            else:
                logits = population_forward(module, params, X, shared=False)
            losses = per_sample_loss(logits, y).mean(-1)
            failed |= ~torch.isfinite(losses)
            if hand_written:
                (d_logits,) = torch.autograd.grad(losses.sum(), logits)
                by_name = backward(d_logits)
                grads = [by_name[name] for name in params]
            else:
                grads = torch.autograd.grad(losses.sum(), weights)
            with torch.no_grad():
                torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, grads)
                torch._foreach_add_(weights, buffers, alpha=-lr)
            if step in checkpoints and step < steps and on_checkpoint is not None:
                on_checkpoint(step, *_trained(params, failed))
    finally:
        if set_progress is not None:
            set_progress(None)
        if set_shots is not None:
            set_shots(None)
    return _trained(params, failed)


def _trained(params: dict[str, Tensor], failed: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Detached weights, and ``failed`` widened to members whose weights are not finite."""
    failed = failed.clone()
    with torch.no_grad():
        for w in params.values():
            failed |= ~torch.isfinite(w.reshape(len(failed), -1)).all(1)
    return {k: v.detach() for k, v in params.items()}, failed


def activation_floats(module: nn.Module, params: dict[str, Tensor], X: Tensor) -> int:
    """Floats autograd keeps per member and per sample in a training step of ``module``.

    Measured by counting what autograd saves for one member on one and on two samples (the
    difference leaves out the weights, which are saved once).
    """
    one_member = {k: v[:1].detach().requires_grad_(True) for k, v in params.items()}
    counts = []
    for n in (1, 2):
        total = 0

        def pack(t: Tensor) -> Tensor:
            nonlocal total
            total += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            population_forward(module, one_member, X[:n], shared=True)
        counts.append(total)
    return max(1, counts[1] - counts[0])


@dataclass(frozen=True)
class PreparedTasks:
    """What every training pass over one :class:`TaskBatch` shares, built once per batch.

    ``module`` is the template, ``init`` the initial weights of each task stacked
    ``{name: (T, ...)}``, ``floats_per_sample`` :func:`activation_floats` (the same for
    training and validation inputs: it depends on a sample's shape only).
    """

    module: nn.Module
    init: dict[str, Tensor]
    floats_per_sample: int


def prepare_tasks(config: InnerConfig, batch: TaskBatch) -> PreparedTasks:
    """Build the template, the tasks' initial weights and the memory probe, once."""
    module, init = init_population(config.module_factory, batch.init_seeds, config.device)
    X = to_tensor(batch.X_train[0], config.device)
    return PreparedTasks(module, init, activation_floats(module, init, X))


def members_per_pass(
    config: InnerConfig, batch: TaskBatch, prepared: PreparedTasks | None = None
) -> int:
    """How many classifiers fit in one training pass under :data:`MEMORY_BUDGET_FLOATS`."""
    if prepared is None:
        module, params = init_population(config.module_factory, batch.init_seeds[:1], config.device)
        floats = activation_floats(module, params, to_tensor(batch.X_train[0], config.device))
    else:
        floats = prepared.floats_per_sample
    return max(1, MEMORY_BUDGET_FLOATS // (floats * batch.X_train.shape[1]))


def _predict_chunked(
    forward: Callable[[Tensor], Tensor], X: Tensor, n_members: int, floats_per_sample: int
) -> Tensor:
    """Class predictions ``(M, V)``, evaluated over slices of ``X`` that fit the memory budget.

    ``floats_per_sample`` is :func:`activation_floats`: what a training step keeps per member
    and sample bounds what a forward pass holds at once.
    """
    chunk = max(1, MEMORY_BUDGET_FLOATS // (floats_per_sample * n_members))
    preds = []
    with torch.no_grad():
        for start in range(0, X.shape[0], chunk):
            preds.append(forward(X[start : start + chunk]).argmax(-1))
    return torch.cat(preds, dim=1)


#: fewest validation samples a prediction pass should take at once: fewer members per pass
#: beats slices so thin that per-call overhead dominates (a CNN population sliced into
#: 12-image chunks predicted several times slower than one member at a time)
MIN_PREDICTION_CHUNK = 512


def predict_population(
    module: nn.Module, params: dict[str, Tensor], X: Tensor, floats_per_sample: int
) -> Tensor:
    """Class predictions ``(M, V)`` of ``M`` stacked classifiers on shared inputs ``X``.

    Members go in groups small enough that each forward pass takes at least
    :data:`MIN_PREDICTION_CHUNK` samples (or all of ``X``) within the memory budget.
    """
    n_members = next(iter(params.values())).shape[0]
    samples = min(X.shape[0], MIN_PREDICTION_CHUNK)
    group = max(1, min(n_members, MEMORY_BUDGET_FLOATS // (floats_per_sample * samples)))
    preds = []
    for start in range(0, n_members, group):
        part = {k: v[start : start + group] for k, v in params.items()}
        preds.append(
            _predict_chunked(
                lambda xb, p=part: population_forward(module, p, xb, shared=True),
                X,
                next(iter(part.values())).shape[0],
                floats_per_sample,
            )
        )
    return torch.cat(preds)


def score_population(
    per_sample_loss: PerSampleLoss,
    n_candidates: int,
    config: InnerConfig,
    batch: TaskBatch,
    X_val: np.ndarray,
    *,
    prepared: PreparedTasks | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(n_candidates, n_tasks)`` and failure flags, all members trained at once.

    As in :func:`score_reference`, the accuracy is the real one, failed or not.

    ``per_sample_loss(logits (M, n, C), y (M, n)) -> (M, n)`` applies candidate
    ``m // n_tasks``'s loss to member ``m``. ``prepared`` (:func:`prepare_tasks` of this
    ``config`` and ``batch``) lets several calls on one batch share its set-up.
    """
    scores = score_population_at_steps(
        per_sample_loss, n_candidates, config, batch, X_val, [config.steps], prepared=prepared
    )
    return scores[config.steps]


def score_population_at_steps(
    per_sample_loss: PerSampleLoss,
    n_candidates: int,
    config: InnerConfig,
    batch: TaskBatch,
    X_val: np.ndarray,
    steps: Sequence[int],
    *,
    prepared: PreparedTasks | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """:func:`score_population` after each number of SGD steps in ``steps``, from one run.

    ``config.steps`` is ignored: the members train for ``max(steps)`` steps and are scored
    on the way, with the results separate runs of each length would give.
    """
    n_tasks = batch.n_tasks
    n_members = n_candidates * n_tasks
    prepared = prepare_tasks(config, batch) if prepared is None else prepared
    module, init, floats_per_sample = prepared.module, prepared.init, prepared.floats_per_sample
    params = {k: v.repeat(n_candidates, *([1] * (v.ndim - 1))) for k, v in init.items()}
    X = to_tensor(batch.X_train, config.device)
    X = X.repeat(n_candidates, *([1] * (X.ndim - 1)))
    y = to_tensor(batch.y_train, config.device).repeat(n_candidates, 1)
    X_val_t = to_tensor(X_val, config.device).float()
    y_val = to_tensor(batch.y_val, config.device)
    scores: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def score(step: int, trained: dict[str, Tensor], failed: Tensor) -> None:
        pred = predict_population(module, trained, X_val_t, floats_per_sample)
        acc = np.zeros(n_members)
        failed_np = failed.cpu().numpy().copy()
        for m in range(n_members):
            acc[m], collapsed = _accuracy(pred[m], y_val[m % n_tasks])
            failed_np[m] |= collapsed or not np.isfinite(acc[m])
        shape = (n_candidates, n_tasks)
        scores[step] = acc.reshape(shape), failed_np.reshape(shape)

    last = max(int(s) for s in steps)
    trained, failed = train_population(
        module,
        params,
        X,
        y,
        per_sample_loss,
        lr=config.lr,
        steps=last,
        momentum=config.momentum,
        checkpoints={int(s) for s in steps},
        on_checkpoint=score,
    )
    score(last, trained, failed)
    return {int(s): scores[int(s)] for s in steps}


def mln_population_loss(thetas: np.ndarray, spec: MetaLossSpec, n_tasks: int, device="cpu"):
    """The per-sample loss of candidate ``m // n_tasks`` applied to member ``m``."""
    theta = torch.as_tensor(np.asarray(thetas), device=device).repeat_interleave(n_tasks, dim=0)

    told = {"progress": None, "shots": None}

    def per_sample(logits: Tensor, y: Tensor) -> Tensor:
        return meta_loss_per_sample(theta, logits, y, spec, fast=True, **told)

    per_sample.set_progress = partial(told.__setitem__, "progress")
    per_sample.set_shots = partial(told.__setitem__, "shots")
    return per_sample
