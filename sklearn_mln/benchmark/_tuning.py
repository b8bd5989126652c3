"""Tuning a loss's settings on few-shot tasks: many settings trained together, scored on
the way, by successive halving.

Every (loss, hyperparameter) setting of one learning rate trains in one population pass
(:func:`~sklearn_mln._evolution._inner.score_population_at_steps`), and one run scores every step
count of the grid, so tuning many settings costs little more than tuning a few.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from .._evolution._inner import InnerConfig, TaskBatch, members_per_pass, score_population_at_steps


@dataclass(frozen=True)
class Setting:
    """One point of a tuning grid: a loss (family and hyperparameters) and SGD settings."""

    loss: str
    params: tuple[tuple[str, float], ...]
    lr: float
    steps: int

    def record(self) -> dict:
        return {"params": dict(self.params), "lr": self.lr, "steps": self.steps}


@dataclass
class _Scores:
    """Accuracy and failure flags per setting, and the wall time charged to each loss."""

    accuracy: dict[Setting, np.ndarray] = field(default_factory=dict)
    failed: dict[Setting, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _stacked_per_sample(losses: Sequence[nn.Module], n_tasks: int):
    """Loss ``i`` applied to members ``i * n_tasks .. (i + 1) * n_tasks - 1``."""

    def per_sample(logits: Tensor, y: Tensor) -> Tensor:
        return torch.cat(
            [
                loss.per_sample(
                    logits[i * n_tasks : (i + 1) * n_tasks], y[i * n_tasks : (i + 1) * n_tasks]
                )
                for i, loss in enumerate(losses)
            ]
        )

    def telling(attribute: str):
        """Tell every meta-loss among ``losses`` ``attribute`` (training progress or the
        examples per class), as the inner loop tells a single loss."""

        def tell(value: float | None) -> None:
            for loss in losses:
                if hasattr(loss, attribute):
                    setattr(loss, attribute, value)

        return tell

    per_sample.set_progress = telling("progress")
    per_sample.set_shots = telling("shots")
    return per_sample


def score_settings(
    settings: Sequence[Setting],
    modules: Mapping[tuple, nn.Module],
    module_factory: Callable[[], nn.Module],
    batch: TaskBatch,
    X_val: np.ndarray,
    *,
    momentum: float = 0.9,
    device: str = "cpu",
    scores: _Scores | None = None,
) -> _Scores:
    """Accuracy ``(n_tasks,)`` of every setting on every task of ``batch``.

    ``modules[(loss, params)]`` is the loss of a setting. Settings of one learning rate
    train together, in passes that keep the autograd graph inside the inner loop's memory
    budget; each pass trains to its largest step count and scores the smaller ones on the
    way. Wall time is charged to each loss by its share of a pass's members.
    """
    scores = scores if scores is not None else _Scores()
    n_tasks = batch.n_tasks
    by_lr: dict[float, dict[tuple, list[int]]] = {}
    for s in settings:
        by_lr.setdefault(s.lr, {}).setdefault((s.loss, s.params), []).append(s.steps)
    with torch.random.fork_rng(devices=[]):
        for lr, by_loss in sorted(by_lr.items()):
            config = InnerConfig(module_factory, lr=float(lr), momentum=momentum, device=device)
            capacity = members_per_pass(config, batch)
            keys = list(by_loss)
            losses_per_pass = max(1, capacity // n_tasks)
            tasks_per_pass = min(n_tasks, capacity)
            for start in range(0, len(keys), losses_per_pass):
                group = keys[start : start + losses_per_pass]
                steps = sorted({st for key in group for st in by_loss[key]})
                for t0 in range(0, n_tasks, tasks_per_pass):
                    part = batch.take(slice(t0, t0 + tasks_per_pass))
                    tick = time.perf_counter()
                    result = score_population_at_steps(
                        _stacked_per_sample([modules[k] for k in group], part.n_tasks),
                        len(group),
                        config,
                        part,
                        X_val,
                        steps,
                    )
                    seconds = time.perf_counter() - tick
                    for i, (name, params) in enumerate(group):
                        scores.seconds[name] = scores.seconds.get(name, 0.0) + seconds / len(group)
                        for st in by_loss[(name, params)]:
                            setting = Setting(name, params, float(lr), int(st))
                            acc, fail = result[st][0][i], result[st][1][i]
                            scores.accuracy[setting] = np.concatenate(
                                [scores.accuracy.get(setting, np.empty(0)), acc]
                            )
                            scores.failed[setting] = np.concatenate(
                                [scores.failed.get(setting, np.empty(0, dtype=bool)), fail]
                            )
    return scores


def param_grid(grid: Mapping[str, Sequence[float]]) -> list[tuple[tuple[str, float], ...]]:
    points: list[tuple[tuple[str, float], ...]] = [()]
    for name, values in grid.items():
        points = [(*p, (name, float(v))) for p in points for v in values]
    return points


def _extend(grid_lr: list[float], upward: bool) -> float:
    ratio = grid_lr[-1] / grid_lr[-2] if len(grid_lr) > 1 else 3.0
    return grid_lr[-1] * ratio if upward else grid_lr[0] / ratio


@dataclass
class _Tuning:
    """The state of one tuning: its task halves, each family's grids and the scores so far."""

    families: Mapping[str, Mapping[str, Sequence[float]]]
    score: Callable[..., _Scores]  # score_settings with the module, data and SGD bound
    screen: TaskBatch
    rest: TaskBatch
    grids: dict[str, list[float]]
    points: dict[str, list[tuple[tuple[str, float], ...]]]
    steps: list[int]
    max_extensions: int
    extensions: dict[str, int] = field(default_factory=dict)
    screening: _Scores = field(default_factory=_Scores)
    final: _Scores = field(default_factory=_Scores)

    def grid_of(self, name: str, lrs: Sequence[float]) -> list[Setting]:
        return [
            Setting(name, p, lr, st) for p in self.points[name] for lr in lrs for st in self.steps
        ]

    def on_edge(self, name: str, setting: Setting) -> bool:
        lrs = self.grids[name]
        return len(lrs) > 1 and setting.lr in (lrs[0], lrs[-1])

    def may_extend(self, name: str, setting: Setting) -> bool:
        used = self.extensions.get(name, 0)
        return self.on_edge(name, setting) and used < self.max_extensions

    def extend(self, name: str, setting: Setting) -> float:
        self.extensions[name] = self.extensions.get(name, 0) + 1
        lrs = self.grids[name]
        new_lr = _extend(lrs, upward=setting.lr == lrs[-1])
        self.grids[name] = sorted([*lrs, new_lr])
        return new_lr

    def seconds(self, name: str) -> float:
        """Wall time charged to loss ``name`` by every pass, screening and final."""
        spent = self.screening.seconds.get(name, 0.0)
        if self.final is not self.screening:
            spent += self.final.seconds.get(name, 0.0)
        return spent

    def run_on_all(self, settings: list[Setting]) -> None:
        """Score ``settings`` on the tasks they have not seen yet; ``final`` on all."""
        unscreened = [s for s in settings if s not in self.screening.accuracy]
        if unscreened:
            self.score(unscreened, self.screen, scores=self.screening)
        if not self.rest.n_tasks:
            self.final = self.screening
            return
        more = self.score(settings, self.rest)
        for s in settings:
            self.final.accuracy[s] = np.concatenate([self.screening.accuracy[s], more.accuracy[s]])
            self.final.failed[s] = np.concatenate([self.screening.failed[s], more.failed[s]])
        for name, seconds in more.seconds.items():  # the final stage's own passes
            self.final.seconds[name] = self.final.seconds.get(name, 0.0) + seconds


def tune(
    families: Mapping[str, Mapping[str, Sequence[float]]],
    modules: Mapping[tuple, nn.Module],
    module_factory: Callable[[], nn.Module],
    batch: TaskBatch,
    X_val: np.ndarray,
    *,
    grid_lr: Sequence[float],
    grid_steps: Sequence[int],
    max_lr_extensions: int = 3,
    n_screening_tasks: int = 5,
    n_finalists: int = 3,
    momentum: float = 0.9,
    device: str = "cpu",
) -> tuple[dict[str, dict], _Scores, _Scores]:
    """The best setting of every loss family, by mean accuracy on the tuning tasks.

    ``families[name]`` is the loss's own hyperparameter grid (empty for none). Two rounds
    (successive halving): every setting is screened on the first ``n_screening_tasks``
    tasks, each family's lr grid extended there while its best lies on an edge; then each
    family's ``n_finalists`` best (hyperparameters, lr) pairs, every step count, run on the
    other tasks, and the pick is the finalist with the best mean over *all* tuning tasks.
    Should that pick lie on an edge of the lr grid, the grid grows again (the pick's
    hyperparameters at the next lr, on all tasks); a family's grid grows at most
    ``max_lr_extensions`` times in all.
    With no more tasks than ``n_screening_tasks`` every setting sees every task. Ties go
    to the earlier setting: smaller hyperparameter, then smaller lr, then fewer steps.
    Returns ``{name: {"setting", "score", "at_edge", "lr_grid", "seconds"}}`` (seconds: the
    loss's share of every tuning pass), the screening scores and the finalists' scores on
    all tasks.
    """
    score = partial(
        score_settings, modules=modules, module_factory=module_factory, X_val=X_val,
        momentum=momentum, device=device,
    )  # fmt: skip
    state = _Tuning(
        families, lambda settings, tasks, **kw: score(settings, batch=tasks, **kw),
        batch.take(slice(0, n_screening_tasks)), batch.take(slice(n_screening_tasks, None)),
        {name: sorted(float(v) for v in grid_lr) for name in families},
        {name: param_grid(grid) for name, grid in families.items()},
        sorted(int(st) for st in grid_steps), max_lr_extensions,
    )  # fmt: skip
    state.score(
        [s for name in families for s in state.grid_of(name, state.grids[name])],
        state.screen, scores=state.screening,
    )  # fmt: skip
    for _ in range(max_lr_extensions):
        extensions = []
        for name in families:
            best = _best(state.screening, state.grid_of(name, state.grids[name]))
            if state.may_extend(name, best):
                extensions += state.grid_of(name, [state.extend(name, best)])
        if not extensions:
            break
        state.score(extensions, state.screen, scores=state.screening)
    finalists = {name: _finalists(state, name, n_finalists) for name in families}
    state.run_on_all([s for group in finalists.values() for s in group])
    for _ in range(max_lr_extensions):
        extensions = []
        for name in families:
            best = _best(state.final, finalists[name])
            if state.may_extend(name, best):
                new_lr = state.extend(name, best)
                added = [Setting(name, best.params, new_lr, st) for st in state.steps]
                finalists[name] += added
                extensions += added
        if not extensions:
            break
        state.run_on_all(extensions)
    picks = {name: _pick(state, name, finalists[name]) for name in families}
    return picks, state.screening, state.final


def _finalists(state: _Tuning, name: str, n_finalists: int) -> list[Setting]:
    ranked = sorted(
        state.grid_of(name, state.grids[name]), key=lambda s: -state.screening.accuracy[s].mean()
    )  # a stable sort: ties keep the grid's order
    pairs = list(dict.fromkeys((s.params, s.lr) for s in ranked))[:n_finalists]
    return [Setting(name, p, lr, st) for p, lr in pairs for st in state.steps]


def _pick(state: _Tuning, name: str, finalists: list[Setting]) -> dict:
    best = _best(state.final, finalists)
    edges = ["lr"] if state.on_edge(name, best) else []
    if len(state.steps) > 1 and best.steps in (state.steps[0], state.steps[-1]):
        edges.append("steps")
    for key, value in best.params:
        values = sorted(state.families[name][key])
        if len(values) > 1 and value in (values[0], values[-1]):
            edges.append(key)
    return {
        "setting": best,
        "score": float(state.final.accuracy[best].mean()),
        "at_edge": edges,
        "lr_grid": state.grids[name],
        "seconds": state.seconds(name),
    }


def _best(scores: _Scores, candidates: Sequence[Setting]) -> Setting:
    means = [scores.accuracy[s].mean() for s in candidates]
    return candidates[int(np.argmax(means))]  # first maximum: ties go to the earlier point
