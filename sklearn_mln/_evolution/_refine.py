"""Gradient refinement of a meta-loss: a validation loss differentiated through training.

CMA-ES sees only each candidate's accuracy, a noisy, piecewise-constant number. After it, an
optional local search follows the gradient that ML3 and EvoMAL use: classifiers are trained
on a generation's tasks with the loss, every SGD step kept in the autograd graph
(``create_graph=True``), and the mean validation cross-entropy of the trained classifiers is
differentiated back to the loss's parameters; Adam takes the step. The validation loss is
smooth where accuracy is not, so the gradient can see changes smaller than a task draw's
noise; whether what it finds is better is decided by the same fixed re-evaluation tasks as
every other candidate (:class:`~sklearn_mln.MLNEvolver` keeps the refined loss only if it
scores higher there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._classifier._nets import population_forward, twice_differentiable
from .._losses._meta_loss import MetaLossSpec, examples_per_class, meta_loss_per_sample
from ._inner import InnerConfig, TaskBatch, init_population, to_tensor

#: validation rows per task a refinement step scores (a random subset each step): the
#: gradient's memory grows with them, its variance falls slowly beyond a few hundred
VALIDATION_ROWS = 512


def validation_loss_and_gradient(
    theta: np.ndarray,
    spec: MetaLossSpec,
    config: InnerConfig,
    batch: TaskBatch,
    X_val: np.ndarray,
    rows: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Mean validation cross-entropy of classifiers trained with ``theta``, and its gradient.

    Every task of ``batch`` trains one classifier from its own initial weights for
    ``config.steps`` full-batch SGD steps with momentum, exactly as the inner loop does,
    but with the steps kept differentiable. ``rows`` selects the validation rows scored
    (default: all); a task scores those of its rows that count for it.
    """
    with twice_differentiable():
        return _loss_and_gradient(theta, spec, config, batch, X_val, rows)


def _loss_and_gradient(theta, spec, config, batch, X_val, rows) -> tuple[float, np.ndarray]:
    theta_t = torch.tensor(np.asarray(theta, dtype=np.float64), requires_grad=True)
    module, init = init_population(config.module_factory, batch.init_seeds, config.device)
    X = to_tensor(batch.X_train, config.device)
    y = to_tensor(batch.y_train, config.device)
    thetas = theta_t.to(config.device).unsqueeze(0).expand(batch.n_tasks, -1)
    shots = examples_per_class(y[0])
    params = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    for step in range(config.steps):
        logits = population_forward(module, params, X, shared=False)
        losses = meta_loss_per_sample(
            thetas, logits, y, spec, progress=step / config.steps, shots=shots
        )
        grads = torch.autograd.grad(losses.mean(-1).sum(), list(params.values()), create_graph=True)
        for (name, weight), grad in zip(list(params.items()), grads):
            velocity[name] = config.momentum * velocity[name] + grad
            params[name] = weight - config.lr * velocity[name]
    rows = np.arange(len(X_val)) if rows is None else np.asarray(rows)
    X_v = to_tensor(X_val[rows], config.device).float()
    y_v = to_tensor(batch.y_val[:, rows], config.device)
    logits = population_forward(module, params, X_v, shared=True)
    counts = (y_v >= 0).sum(1).clamp(min=1)
    ce = F.cross_entropy(logits.transpose(1, 2), y_v.clamp(min=0), reduction="none")
    objective = ((ce * (y_v >= 0)).sum(1) / counts).mean()
    (gradient,) = torch.autograd.grad(objective, theta_t)
    return float(objective.detach()), gradient.cpu().numpy()


@dataclass
class Adam:
    """Adam on a flat vector (its state is two arrays and a step count)."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    step_count: int = 0
    m: np.ndarray | None = None
    v: np.ndarray | None = None

    def step(self, x: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        if self.m is None:
            self.m, self.v = np.zeros_like(x), np.zeros_like(x)
        self.step_count += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * gradient
        self.v = self.beta2 * self.v + (1 - self.beta2) * gradient**2
        m_hat = self.m / (1 - self.beta1**self.step_count)
        v_hat = self.v / (1 - self.beta2**self.step_count)
        return x - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def refine(
    theta: np.ndarray,
    spec: MetaLossSpec,
    config: InnerConfig,
    task_batches,
    X_val: np.ndarray,
    *,
    lr: float,
    rng: np.random.RandomState,
) -> tuple[np.ndarray, list[dict]]:
    """Adam steps on ``theta``, one per batch of tasks in ``task_batches``.

    Returns the refined vector and one record per step (validation loss before the step,
    gradient norm). A step whose loss or gradient is not finite is skipped.
    """
    adam, records = Adam(lr), []
    for batch in task_batches:
        rows = rng.choice(len(X_val), min(VALIDATION_ROWS, len(X_val)), replace=False)
        value, gradient = validation_loss_and_gradient(theta, spec, config, batch, X_val, rows)
        finite = bool(np.isfinite(value) and np.all(np.isfinite(gradient)))
        records.append({"validation_loss": value, "gradient_norm": float(np.linalg.norm(gradient))})
        if finite:
            theta = adam.step(theta, gradient)
    return theta, records


def tasks_of(problem, seeds) -> list[TaskBatch]:
    """One batch of ``problem``'s tasks per seed (a plain problem, not a mixture)."""
    return [problem.tasks(int(seed), problem.n_tasks) for seed in seeds]
