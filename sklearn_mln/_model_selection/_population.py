"""Cross-validation folds of many candidate settings, trained as populations.

What :meth:`MLNClassifier.fit <sklearn_mln.MLNClassifier.fit>` does on one fold -- full-batch
SGD with momentum from the initial weights of its seed, the loss's mean over the fold's
rows -- done for every (candidate loss, fold) member of one step size at once by
:func:`~sklearn_mln._evolution._inner.train_population`, and scored after each number of
epochs of the grid on the way. Folds of unequal size are padded with copies of a row
that carry no weight, so each member's loss is the mean over its own rows.

Members are ordered loss-major: member ``m`` is loss ``m // n_folds`` of its pass on fold
``m % n_folds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .._classifier._nets import population_forward, supports_population
from .._evolution._inner import (
    MEMORY_BUDGET_FLOATS,
    activation_floats,
    make_module,
    to_tensor,
    train_population,
)


@dataclass(frozen=True)
class Candidate:
    """One setting, resolved: its loss (``key`` tells equal losses apart), lr and epochs."""

    key: Hashable
    loss: nn.Module
    lr: float
    steps: int


@dataclass(frozen=True)
class Folds:
    """The training folds stacked and padded to one size, and the validation folds.

    ``weight[f]`` is ``n_padded / n_f`` on fold ``f``'s own rows and 0 on its padding:
    the mean of ``weight * loss`` over the padded rows is the mean over the fold's rows.
    ``shots[f]`` is the examples per class of fold ``f``'s training labels.
    """

    X_train: Tensor  # (F, n, ...)
    y_train: Tensor  # (F, n)
    weight: Tensor | None  # (F, n); None when every fold has the same size
    shots: tuple[float, ...]
    X_val: tuple[Tensor, ...]

    @property
    def n_folds(self) -> int:
        return len(self.X_val)


def make_folds(
    X: np.ndarray, y: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]], device: str
) -> Folds:
    """Gather ``(train, validation)`` index pairs of ``X`` and encoded labels ``y``."""
    size = max(len(train) for train, _ in splits)
    padded = [np.r_[train, np.full(size - len(train), train[0])] for train, _ in splits]
    counts = np.array([len(train) for train, _ in splits], dtype=np.float32)
    weight = None
    if (counts != size).any():
        mask = np.arange(size)[None, :] < counts[:, None]
        weight = to_tensor((mask * (size / counts[:, None])).astype(np.float32), device)
    return Folds(
        X_train=to_tensor(np.stack([X[rows] for rows in padded]), device),
        y_train=to_tensor(np.stack([y[rows] for rows in padded]), device),
        weight=weight,
        shots=tuple(len(train) / len(np.unique(y[train])) for train, _ in splits),
        X_val=tuple(to_tensor(X[val], device) for _, val in splits),
    )


def can_batch(module_factory: Callable[[], nn.Module], folds: Folds, seed: int) -> bool:
    """Whether the module of ``seed`` runs in population form on these folds' rows (see
    :func:`~sklearn_mln._classifier._nets.supports_population`); else the candidates train
    one at a time."""
    module = make_module(module_factory, seed).to(folds.X_train.device)
    return supports_population(module, folds.X_train[0, :2])


def _takes(loss: nn.Module, flag: str) -> bool:
    return bool(getattr(getattr(loss, "spec", None), flag, False))


def _member_loss(segments: list[tuple[nn.Module, slice, float | None]], weight: Tensor | None):
    """Loss ``segments[i][0]`` on members ``segments[i][1]``, as ``MLNClassifier`` tells it.

    A shots-input meta-loss sees its fold's examples per class (``segments[i][2]``); every
    meta-loss is told the training progress through ``set_progress``.
    """
    losses = list({id(loss): loss for loss, _, _ in segments}.values())

    def per_sample(logits: Tensor, y: Tensor) -> Tensor:
        parts = []
        for loss, members, shots in segments:
            if shots is not None:
                loss.shots = shots
            parts.append(loss.per_sample(logits[members], y[members]))
        values = torch.cat(parts)
        return values if weight is None else values * weight

    def set_progress(progress: float | None) -> None:
        for loss in losses:
            if hasattr(loss, "progress"):
                loss.progress = progress

    per_sample.set_progress = set_progress
    return per_sample


def _passes(
    candidates: Sequence[Candidate], n_folds: int, capacity: int
) -> list[tuple[list[int], list[int]]]:
    """(candidates, folds) of each pass: one step size (and, for a progress-input loss, one
    number of epochs), at most ``capacity`` members, as many losses on all folds as fit,
    else one loss on as many folds as fit."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault((c.lr, c.steps if _takes(c.loss, "progress_input") else 0), []).append(i)
    losses_per_pass = max(1, capacity // n_folds)
    folds_per_pass = min(n_folds, capacity)
    passes = []
    for members in groups.values():
        keys = list(dict.fromkeys(candidates[i].key for i in members))
        for start in range(0, len(keys), losses_per_pass):
            chunk = set(keys[start : start + losses_per_pass])
            group = [i for i in members if candidates[i].key in chunk]
            for f0 in range(0, n_folds, folds_per_pass):
                passes.append((group, list(range(f0, min(n_folds, f0 + folds_per_pass)))))
    return passes


def _probas(
    module: nn.Module,
    params: dict[str, Tensor],
    X_val: Tensor,
    floats_per_sample: int,
) -> np.ndarray:
    """``MLNClassifier.predict_proba`` of stacked members on shared rows: ``(m, V, C)``."""
    n_members = next(iter(params.values())).shape[0]
    rows = max(1, MEMORY_BUDGET_FLOATS // (floats_per_sample * n_members))
    training = module.training
    module.eval()  # as skorch predicts
    try:
        with torch.no_grad():
            parts = [
                torch.softmax(
                    population_forward(module, params, X_val[s : s + rows], shared=True), -1
                )
                for s in range(0, X_val.shape[0], rows)
            ]
    finally:
        module.train(training)
    proba = torch.cat(parts, dim=1).cpu().numpy().astype(np.float64)
    return proba / proba.sum(axis=-1, keepdims=True)


def population_probas(
    candidates: Sequence[Candidate],
    module_factory: Callable[[], nn.Module],
    folds: Folds,
    *,
    seed: int,
    momentum: float,
    device: str = "cpu",
) -> tuple[dict[tuple[int, int], np.ndarray], np.ndarray]:
    """Validation probabilities of every (candidate, fold), and each candidate's fit time.

    Every classifier starts from the weights ``seed`` draws (as ``MLNClassifier`` with a
    fixed ``random_state`` in every fold). Returns ``{(candidate, fold): proba (V_f, C)}``
    and the wall time of the passes shared among the candidates ``(n_candidates,)``.
    """
    module = make_module(module_factory, seed).to(device)
    init = {k: v.detach() for k, v in module.named_parameters()}
    floats = activation_floats(module, {k: v[None] for k, v in init.items()}, folds.X_train[0])
    capacity = max(1, MEMORY_BUDGET_FLOATS // (floats * folds.X_train.shape[1]))
    probas: dict[tuple[int, int], np.ndarray] = {}
    seconds = np.zeros(len(candidates))
    for group, fold_ids in _passes(candidates, folds.n_folds, capacity):
        tick = time.perf_counter()
        members = [candidates[i] for i in group]
        for (c, f), proba in _train_pass(members, fold_ids, module, init, folds, floats, momentum):
            probas[(group[c], f)] = proba
        seconds[group] += (time.perf_counter() - tick) / len(group)
    return probas, seconds


def _train_pass(candidates, fold_ids, module, init, folds, floats, momentum):
    """One population pass: each distinct loss of ``candidates`` on each fold of
    ``fold_ids``, trained to the largest number of epochs; yields ``((candidate, fold),
    proba)`` at each candidate's own number of epochs."""
    keys = list(dict.fromkeys(c.key for c in candidates))
    losses = {c.key: c.loss for c in candidates}
    n = len(fold_ids)
    segments = []
    for j, key in enumerate(keys):
        if _takes(losses[key], "shots_input"):
            segments += [(losses[key], slice(j * n + i, j * n + i + 1), folds.shots[f])
                         for i, f in enumerate(fold_ids)]  # fmt: skip
        else:
            segments.append((losses[key], slice(j * n, (j + 1) * n), None))
    X = folds.X_train[fold_ids]
    weight = None if folds.weight is None else folds.weight[fold_ids].repeat(len(keys), 1)
    results = []

    def score(step: int, trained: dict[str, Tensor], _failed=None) -> None:
        due = [c for c, candidate in enumerate(candidates) if candidate.steps == step]
        for i, f in enumerate(fold_ids):
            rows = [j * n + i for j in range(len(keys))]
            proba = _probas(
                module, {k: v[rows] for k, v in trained.items()}, folds.X_val[f], floats
            )
            results.extend(((c, f), proba[keys.index(candidates[c].key)]) for c in due)

    steps = {c.steps for c in candidates}
    trained, failed = train_population(
        module,
        {k: v.repeat(len(keys) * n, *([1] * v.ndim)) for k, v in init.items()},
        X.repeat(len(keys), *([1] * (X.ndim - 1))),
        folds.y_train[fold_ids].repeat(len(keys), 1),
        _member_loss(segments, weight),
        lr=candidates[0].lr,
        steps=max(steps),
        momentum=momentum,
        checkpoints=steps,
        on_checkpoint=score,
    )
    score(max(steps), trained, failed)
    return results
