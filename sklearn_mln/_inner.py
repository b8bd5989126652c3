"""Inner loop: train small classifiers from scratch on tasks with a given loss, then score them.

Two implementations that agree to float tolerance from the same seeds:

* :func:`score_reference`: one classifier at a time, ``nn.Module`` + ``torch.optim.SGD``
  (the readable reference);
* :func:`score_population`: every (candidate loss, task) pair trains at once, parameters
  stacked along a leading *member* dimension, one autograd pass per SGD step.

Members are ordered candidate-major: member ``m`` is candidate ``m // n_tasks`` on task
``m % n_tasks``. Every candidate sees the same tasks and the same initial weights
(common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ._meta_loss import MetaLossSpec, meta_loss_per_sample
from ._modules import population_forward
from ._tasks import Task

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]
#: activations (floats) a population forward may hold at once when scoring; sets chunk sizes
MEMORY_BUDGET_FLOATS = 2**25


@dataclass(frozen=True)
class InnerProblem:
    """Everything fixed while losses are compared: data, classifier, SGD settings.

    ``X_source``/``y_source`` is the pool tasks are drawn from; ``X_val``/``y_val`` the
    set accuracy is measured on. Labels are encoded ``0 .. n_classes - 1``.
    """

    module_factory: Callable[[], nn.Module]
    X_source: np.ndarray
    y_source: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    lr: float = 0.1
    steps: int = 100
    momentum: float = 0.9
    device: str = "cpu"


def make_module(module_factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a classifier with weights drawn from ``seed``, leaving torch's global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return module_factory()


def _task_data(problem: InnerProblem, task: Task) -> tuple[Tensor, Tensor]:
    X = torch.as_tensor(problem.X_source[task.train_indices], device=problem.device)
    y = torch.as_tensor(task.relabel(problem.y_source[task.train_indices]), device=problem.device)
    return X.float(), y


def _accuracy(pred: Tensor, y_task: Tensor) -> tuple[float, bool]:
    """Accuracy on the validation rows of the task's classes, and whether predictions collapsed."""
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
    """Full-batch SGD on one classifier in place; returns whether the loss went non-finite."""
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum)
    for _ in range(steps):
        optimizer.zero_grad()
        value = loss(module(X), y)
        if not torch.isfinite(value):
            return True
        value.backward()
        optimizer.step()
    return False


def score_reference(
    losses: Sequence[nn.Module],
    problem: InnerProblem,
    tasks: Sequence[Task],
    init_seeds: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(n_losses, n_tasks)`` and failure flags, one classifier at a time."""
    acc = np.zeros((len(losses), len(tasks)))
    failed = np.zeros((len(losses), len(tasks)), dtype=bool)
    X_val = torch.as_tensor(problem.X_val, device=problem.device).float()
    for t, (task, seed) in enumerate(zip(tasks, init_seeds)):
        X, y = _task_data(problem, task)
        y_val = torch.as_tensor(task.relabel(problem.y_val), device=problem.device)
        for p, loss in enumerate(losses):
            module = make_module(problem.module_factory, seed).to(problem.device)
            failed[p, t] = train_reference(
                module,
                X,
                y,
                loss.to(problem.device),
                lr=problem.lr,
                steps=problem.steps,
                momentum=problem.momentum,
            )
            with torch.no_grad():
                pred = _predict_chunked(lambda xb, m=module: m(xb).unsqueeze(0), X_val, 1)[0]
            acc[p, t], collapsed = _accuracy(pred, y_val)
            failed[p, t] |= collapsed or not np.isfinite(acc[p, t])
    return np.where(failed, 0.0, acc), failed


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
) -> tuple[dict[str, Tensor], Tensor]:
    """Full-batch SGD on ``M`` stacked classifiers at once.

    ``X`` is ``(M, n, ...)``, ``y`` ``(M, n)``. The members are independent, so the gradient
    of the summed loss is each member's own gradient. Returns the trained weights and a
    ``(M,)`` flag of members whose loss or gradient went non-finite (their weights are
    frozen at that point so they cannot disturb anything).
    """
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    buffers = {k: torch.zeros_like(v) for k, v in params.items()}
    n_members = y.shape[0]
    failed = torch.zeros(n_members, dtype=torch.bool, device=y.device)
    for _ in range(steps):
        logits = population_forward(module, params, X, shared=False)
        losses = per_sample_loss(logits, y).mean(-1)
        failed |= ~torch.isfinite(losses)
        total = torch.where(failed, torch.zeros_like(losses), losses).sum()
        grads = torch.autograd.grad(total, list(params.values()))
        with torch.no_grad():
            for g in grads:
                failed |= ~torch.isfinite(g.reshape(n_members, -1)).all(1)
            keep = (~failed).to(X.dtype)
            for (name, p), g in zip(params.items(), grads):
                mask = keep.reshape(-1, *([1] * (g.ndim - 1)))
                buf = buffers[name].mul_(momentum).add_(torch.nan_to_num(g) * mask)
                p.sub_(lr * buf)
    return {k: v.detach() for k, v in params.items()}, failed


def _predict_chunked(forward: Callable[[Tensor], Tensor], X: Tensor, n_members: int) -> Tensor:
    """Class predictions ``(M, V)``, evaluated over slices of ``X`` that fit the memory budget."""
    with torch.no_grad():
        probe = forward(X[:1])
    per_sample = max(1, probe.numel() // n_members) * 64  # rough size of hidden activations
    chunk = max(1, MEMORY_BUDGET_FLOATS // (per_sample * n_members))
    preds = []
    with torch.no_grad():
        for start in range(0, X.shape[0], chunk):
            preds.append(forward(X[start : start + chunk]).argmax(-1))
    return torch.cat(preds, dim=1)


def score_population(
    per_sample_loss: PerSampleLoss,
    n_candidates: int,
    problem: InnerProblem,
    tasks: Sequence[Task],
    init_seeds: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(n_candidates, n_tasks)`` and failure flags, all members trained at once.

    ``per_sample_loss(logits (M, n, C), y (M, n)) -> (M, n)`` applies candidate
    ``m // n_tasks``'s loss to member ``m``.
    """
    n_tasks = len(tasks)
    n_members = n_candidates * n_tasks
    module, init = init_population(problem.module_factory, init_seeds, problem.device)
    params = {k: v.repeat(n_candidates, *([1] * (v.ndim - 1))) for k, v in init.items()}
    data = [_task_data(problem, task) for task in tasks]
    X = torch.stack([d[0] for d in data]).repeat(n_candidates, *([1] * data[0][0].ndim))
    y = torch.stack([d[1] for d in data]).repeat(n_candidates, 1)
    params, failed = train_population(
        module,
        params,
        X,
        y,
        per_sample_loss,
        lr=problem.lr,
        steps=problem.steps,
        momentum=problem.momentum,
    )
    X_val = torch.as_tensor(problem.X_val, device=problem.device).float()
    pred = _predict_chunked(
        lambda xb: population_forward(module, params, xb, shared=True), X_val, n_members
    )
    acc = np.zeros(n_members)
    failed_np = failed.cpu().numpy().copy()
    y_val_tasks = [torch.as_tensor(t.relabel(problem.y_val), device=problem.device) for t in tasks]
    for m in range(n_members):
        acc[m], collapsed = _accuracy(pred[m], y_val_tasks[m % n_tasks])
        failed_np[m] |= collapsed or not np.isfinite(acc[m])
    acc, failed_np = acc.reshape(n_candidates, n_tasks), failed_np.reshape(n_candidates, n_tasks)
    return np.where(failed_np, 0.0, acc), failed_np


def mln_population_loss(thetas: np.ndarray, spec: MetaLossSpec, n_tasks: int, device="cpu"):
    """The per-sample loss of candidate ``m // n_tasks`` applied to member ``m``."""
    theta = torch.as_tensor(np.asarray(thetas), device=device).repeat_interleave(n_tasks, dim=0)

    def per_sample(logits: Tensor, y: Tensor) -> Tensor:
        return meta_loss_per_sample(theta, logits, y, spec)

    return per_sample
