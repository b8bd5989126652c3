"""The small-data benchmark: losses compared on few-shot tasks, each tuned on its own terms.

Does a learned loss give something a classical loss with tuned settings does not? The
protocol answers with a paired design:

* For each ``k`` (training images per class), *tuning* tasks are drawn from the training
  pool (each classifier scored on the rest of the pool) and *test* tasks from the test
  split (scored on the rest of the test split). Both sets, and the classifiers' initial
  weights, are shared by every loss and architecture.
* Every classical loss is tuned over its **own** hyperparameters (:data:`CLASSICAL_GRIDS`:
  label smoothing over ``smoothing``, Poly-1 over ``epsilon``, focal over ``gamma``) and
  over the SGD learning rate and number of steps; every learned loss gets the same lr and
  steps grid. The lr grid is extended (by the grid's own ratio) while a loss's pick lies on
  its edge, up to ``max_lr_extensions`` times; a pick still on an edge is reported so.
* The tuned point of each loss is frozen and run on the test tasks, which tuning never
  sees. The baseline of a row is the classical loss with the best *tuning* score (picking
  by test accuracy would let the test data choose, and the largest of several noisy means
  is biased upwards).
* Reported per (architecture, k): mean test accuracy, the paired difference to the
  baseline with a 95 % confidence interval, wins / ties / losses, a Wilcoxon signed-rank
  p-value, and the search cost: each loss's share of the tuning wall time (its members'
  share of the batched passes) and, for an evolved loss, its recorded evolution time.

Every (loss, hyperparameter) setting of one learning rate trains in one population pass
(:func:`~sklearn_mln._inner.score_population_at_steps`), and one run scores every step
count of the grid, so tuning many settings costs little more than tuning a few.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ._archive import atomic_write_bytes
from ._classical import CLASSICAL_LOSSES, ClassicalLoss
from ._inner import (
    InnerConfig,
    TaskBatch,
    make_task_batch,
    members_per_pass,
    score_population_at_steps,
)
from ._modules import ARCHITECTURES, architecture_factory
from ._provenance import provenance, provenance_lines
from ._tasks import class_indices, draw_seeds, sample_tasks

__all__ = [
    "ARCHITECTURES",
    "CLASSICAL_GRIDS",
    "benchmark_markdown",
    "comparison_table",
    "paired_accuracies",
    "run_benchmark",
    "small_data_benchmark",
    "summarize",
    "write_benchmark_report",
]

#: each classical loss's own hyperparameter and the values the benchmark tunes it over
CLASSICAL_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "cross_entropy": {},
    "mse": {},
    "label_smoothing": {"smoothing": (0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95)},
    "poly1": {"epsilon": (-1.0, 1.0, 2.0, 4.0)},
    "focal": {"gamma": (0.5, 1.0, 2.0, 3.0)},
}

# ----------------------------------------------------------------------------- scoring settings
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

    return per_sample


def _subset(batch: TaskBatch, index: slice) -> TaskBatch:
    return TaskBatch(
        batch.X_train[index], batch.y_train[index], batch.y_val[index], batch.init_seeds[index]
    )


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
                    part = _subset(batch, slice(t0, t0 + tasks_per_pass))
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


# ----------------------------------------------------------------------------- tuning
def _param_grid(grid: Mapping[str, Sequence[float]]) -> list[tuple[tuple[str, float], ...]]:
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
        for name, seconds in more.seconds.items():
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
    Returns ``{name: {"setting", "score", "at_edge", "lr_grid"}}``, the screening scores
    and the finalists' scores on all tasks.
    """
    score = partial(
        score_settings, modules=modules, module_factory=module_factory, X_val=X_val,
        momentum=momentum, device=device,
    )  # fmt: skip
    state = _Tuning(
        families, lambda settings, tasks, **kw: score(settings, batch=tasks, **kw),
        _subset(batch, slice(0, n_screening_tasks)), _subset(batch, slice(n_screening_tasks, None)),
        {name: sorted(float(v) for v in grid_lr) for name in families},
        {name: _param_grid(grid) for name, grid in families.items()},
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
    }


def _best(scores: _Scores, candidates: Sequence[Setting]) -> Setting:
    means = [scores.accuracy[s].mean() for s in candidates]
    return candidates[int(np.argmax(means))]  # first maximum: ties go to the earlier point


# ----------------------------------------------------------------------------- statistics
def summarize(accuracies: Mapping[str, np.ndarray], baseline: str) -> list[dict]:
    """Per loss: mean, sd, and the paired difference to ``baseline`` with a 95 % CI,
    wins / ties / losses and a two-sided Wilcoxon signed-rank p-value."""
    ref = accuracies[baseline]
    rows = []
    for name, acc in accuracies.items():
        diff = acc - ref
        n = len(diff)
        se = diff.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        rows.append(
            {
                "loss": name,
                "mean": float(acc.mean()),
                "sd": float(acc.std(ddof=1)) if n > 1 else float("nan"),
                "delta": float(diff.mean()),
                "ci95": float(1.96 * se),
                "wins": int((diff > 0).sum()),
                "ties": int((diff == 0).sum()),
                "losses": int((diff < 0).sum()),
                "p_wilcoxon": _wilcoxon(diff),
            }
        )
    return rows


def _wilcoxon(diff: np.ndarray) -> float:
    if not np.any(diff != 0):
        return 1.0
    try:
        from scipy.stats import wilcoxon
    except ImportError:  # scipy is optional; the table shows "nan"
        return float("nan")
    return float(wilcoxon(diff).pvalue)


def paired_accuracies(
    losses: Mapping[str, nn.Module],
    X: np.ndarray,
    y: np.ndarray,
    *,
    module_factory: Callable[[], nn.Module],
    lr: float,
    steps: int,
    n_shots: int,
    n_tasks: int,
    random_state: int,
    momentum: float = 0.9,
) -> dict[str, np.ndarray]:
    """Accuracy on ``n_tasks`` shared tasks for each loss at one SGD setting.

    ``y`` is encoded ``0 .. C-1``; each classifier is scored on the rest of ``X``.
    """
    batch = _shared_tasks(X, y, n_shots, n_tasks, np.random.RandomState(random_state))
    settings = [Setting(name, (), float(lr), int(steps)) for name in losses]
    modules = {(name, ()): loss for name, loss in losses.items()}
    scores = score_settings(settings, modules, module_factory, batch, X, momentum=momentum)
    return {s.loss: scores.accuracy[s] for s in settings}


# ----------------------------------------------------------------------------- the benchmark
def _rng(seed: int, purpose: int, k: int) -> np.random.RandomState:
    """An independent generator per (seed, purpose, k): tuning never shares the test stream."""
    return np.random.RandomState(np.random.SeedSequence([seed, purpose, k]).generate_state(4))


def _shared_tasks(X: np.ndarray, y: np.ndarray, k: int, n_tasks: int, rng) -> TaskBatch:
    tasks = sample_tasks(class_indices(y, int(y.max()) + 1), n_tasks, k, None, rng)
    return make_task_batch(tasks, draw_seeds(rng, n_tasks), X, y, y, val_is_source=True)


def _check_inputs(y_pool, y_test, ks, baselines, losses) -> None:
    unknown = sorted(set(baselines) - set(CLASSICAL_GRIDS))
    if unknown:
        raise ValueError(f"Unknown baselines {unknown}; choose from {list(CLASSICAL_GRIDS)}.")
    if not baselines:
        raise ValueError("The benchmark needs at least one classical loss as a baseline.")
    clash = sorted(set(losses) & set(CLASSICAL_LOSSES))
    if clash:
        raise ValueError(f"Loss names {clash} are taken by classical losses; rename them.")
    n_classes = int(max(y_pool.max(), y_test.max())) + 1
    for split, y in (("pool", y_pool), ("test split", y_test)):
        smallest = int(np.bincount(y, minlength=n_classes).min())
        if max(ks) >= smallest:
            raise ValueError(
                f"k={max(ks)} needs more than {max(ks)} images of every class in the {split}; "
                f"its smallest class has {smallest}."
            )


def small_data_benchmark(
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    losses: Mapping[str, nn.Module] | None = None,
    *,
    baselines: Sequence[str] | Mapping[str, Mapping[str, Sequence[float]]] = tuple(CLASSICAL_GRIDS),
    architectures: Sequence[str] = ("cnn", "mlp"),
    ks: Sequence[int] = (1, 5, 10, 20, 50),
    n_tasks: int = 100,
    n_tuning_tasks: int = 20,
    grid_lr: Sequence[float] = (0.01, 0.03, 0.1, 0.3),
    grid_steps: Sequence[int] = (50, 100, 200),
    max_lr_extensions: int = 3,
    n_screening_tasks: int = 5,
    n_finalists: int = 3,
    momentum: float = 0.9,
    random_state: int = 0,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> dict:
    """Compare losses on small-data tasks: tuned on the pool, tested on fresh test tasks.

    Parameters
    ----------
    X_pool, y_pool : ndarray
        Training split: tuning tasks and the images they are scored on. Labels ``0 .. C-1``.
    X_test, y_test : ndarray
        Test split: test tasks and the images they are scored on.
    losses : mapping of str to loss module, optional
        Learned (or any other) losses, tuned over lr and steps only.
    baselines : sequence of str, or mapping of str to grid
        Classical losses of :data:`CLASSICAL_GRIDS`, each tuned over its own
        hyperparameters as well; a mapping gives each its own grid (a smaller one for an
        expensive run), e.g. ``{"label_smoothing": {"smoothing": (0.1, 0.9)}}``.
    architectures : sequence of str
        Keys of :data:`ARCHITECTURES`.
    ks : sequence of int
        Training images per class.
    n_tasks : int
        Paired test tasks per k.
    n_tuning_tasks : int
        Tuning tasks per k, from the pool.
    grid_lr : sequence of float
        Starting lr grid (SGD, full batch), extended while a pick lies on its edge.
    grid_steps : sequence of int
        SGD steps.
    max_lr_extensions : int
        How many times a loss's lr grid may be extended.
    n_screening_tasks, n_finalists : int
        Successive halving of the tuning (see :func:`tune`): every setting runs on the
        first ``n_screening_tasks`` tuning tasks, each loss's ``n_finalists`` best
        (hyperparameters, lr) pairs on all of them.
    momentum : float
        SGD momentum.
    random_state : int
        Seeds the tuning and test tasks and the classifiers' initial weights.
    device : str
        Torch device of the inner loop.
    log : callable, optional
        Receives one progress line per (architecture, k, loss).
    on_row : callable, optional
        Receives the result so far (same form as the return value) after each
        (architecture, k) row, so that a long run can save what it has done.

    Returns
    -------
    result : dict
        JSON-serialisable: ``settings``, ``results`` (one entry per (architecture, k)) and
        ``provenance`` (commit, versions, command, cores, wall time).
    """
    started = time.perf_counter()
    losses = dict(losses or {})
    _check_inputs(y_pool, y_test, ks, baselines, losses)
    grids = {
        name: dict(baselines[name]) if isinstance(baselines, Mapping) else CLASSICAL_GRIDS[name]
        for name in baselines
    }
    for name, grid in grids.items():
        if set(grid) != set(CLASSICAL_GRIDS[name]):
            raise ValueError(
                f"The grid of {name!r} must give {sorted(CLASSICAL_GRIDS[name])}, "
                f"got {sorted(grid)}."
            )
    baselines = list(grids)
    families = grids | dict.fromkeys(losses, {})
    modules = {
        (name, p): ClassicalLoss(name, **dict(p))
        for name in baselines
        for p in _param_grid(grids[name])
    } | {(name, ()): loss for name, loss in losses.items()}
    n_classes = int(max(y_pool.max(), y_test.max())) + 1
    factories = {a: architecture_factory(a, X_pool.shape[1:], n_classes) for a in architectures}
    results = []
    record = provenance(seed=int(random_state), started=started, threads=torch.get_num_threads())

    def result() -> dict:
        return {
            "settings": {
                "architectures": {a: ARCHITECTURES[a][0] for a in architectures},
                "baselines": {
                    name: {key: [float(x) for x in v] for key, v in grids[name].items()}
                    for name in baselines
                },
                "losses": {name: repr(loss) for name, loss in losses.items()},
                "ks": [int(k) for k in ks],
                "n_tasks": int(n_tasks),
                "n_tuning_tasks": int(n_tuning_tasks),
                "grid_lr": sorted(float(v) for v in grid_lr),
                "grid_steps": sorted(int(v) for v in grid_steps),
                "max_lr_extensions": int(max_lr_extensions),
                "n_screening_tasks": int(min(n_screening_tasks, n_tuning_tasks)),
                "n_finalists": int(n_finalists),
                "momentum": float(momentum),
                "random_state": int(random_state),
                "n_pool": int(len(y_pool)),
                "n_test": int(len(y_test)),
                "baseline_rule": "the classical loss with the best tuning (meta-train) score",
            },
            "results": list(results),
            # the code that ran is the code at the start: commit and tree recorded then
            "provenance": {**record, "wall_seconds": round(time.perf_counter() - started, 2)},
        }

    for k in ks:
        tuning = _shared_tasks(X_pool, y_pool, k, n_tuning_tasks, _rng(random_state, 0, k))
        test = _shared_tasks(X_test, y_test, k, n_tasks, _rng(random_state, 1, k))
        for arch in architectures:
            picks, screening, final = tune(
                families, modules, factories[arch], tuning, X_pool, grid_lr=grid_lr,
                grid_steps=grid_steps, max_lr_extensions=max_lr_extensions,
                n_screening_tasks=n_screening_tasks, n_finalists=n_finalists,
                momentum=momentum, device=device,
            )  # fmt: skip
            chosen = [pick["setting"] for pick in picks.values()]
            test_scores = score_settings(
                chosen, modules, factories[arch], test, X_test, momentum=momentum, device=device
            )
            entry = _entry(arch, k, picks, (screening, final), test_scores, baselines, losses)
            results.append(entry)
            if log is not None:
                for name in families:
                    log(_progress_line(arch, k, name, entry["losses"][name]))
            if on_row is not None:
                on_row(result())
    return result()


def _entry(arch, k, picks, tuning, test_scores, baselines, losses) -> dict:
    screening, final = tuning
    records = {}
    for name, pick in picks.items():
        setting = pick["setting"]
        grid = []
        for s, acc in screening.accuracy.items():
            if s.loss == name:
                point = {**s.record(), "screening_score": float(acc.mean())}
                if s in final.accuracy:
                    point["score"] = float(final.accuracy[s].mean())
                    point["n_failed"] = int(final.failed[s].sum())
                grid.append(point)
        evolution = getattr(losses.get(name), "metadata", {}).get("evolution_seconds")
        records[name] = {
            **setting.record(),
            "kind": "classical" if name in baselines else "learned",
            "tuning_score": pick["score"],
            "at_grid_edge": pick["at_edge"],
            "lr_grid": pick["lr_grid"],
            "tuning_grid": grid,
            "test_accuracy": test_scores.accuracy[setting].tolist(),
            "test_failed": int(test_scores.failed[setting].sum()),
            "seconds": {
                "tuning": final.seconds[name],
                "test": test_scores.seconds[name],
                "evolution": evolution,
            },
        }
    baseline = max(baselines, key=lambda n: records[n]["tuning_score"])  # first wins ties
    accuracies = {n: np.asarray(r["test_accuracy"]) for n, r in records.items()}
    for row in summarize(accuracies, baseline):
        records[row["loss"]]["summary"] = row
    return {"architecture": arch, "k": int(k), "baseline": baseline, "losses": records}


def _describe(record: dict) -> str:
    params = ", ".join(f"{k} {v:g}" for k, v in record["params"].items())
    return (params + ", " if params else "") + f"lr {record['lr']:g}, {record['steps']} steps"


def _progress_line(arch: str, k: int, name: str, record: dict) -> str:
    acc = np.asarray(record["test_accuracy"])
    edge = f" (at grid edge: {', '.join(record['at_grid_edge'])})" if record["at_grid_edge"] else ""
    seconds = record["seconds"]
    return (
        f"[{arch} k={k}] {name}: {_describe(record)}{edge}, tuning {record['tuning_score']:.4f} "
        f"({seconds['tuning']:.1f} s); test {acc.mean():.4f} over {len(acc)} tasks, "
        f"{record['test_failed']} failed ({seconds['test']:.1f} s)"
    )


# ----------------------------------------------------------------------------- reports
def _cost(record: dict) -> str:
    seconds = record["seconds"]
    text = f"{seconds['tuning']:.0f} s"
    if seconds.get("evolution"):
        text += f" + {seconds['evolution'] / 60:.0f} min evolution"
    return text


def comparison_table(rows: list[dict], baseline: str) -> str:
    """A markdown table of :func:`summarize` rows (accuracy, paired Δ to ``baseline``)."""
    lines = [
        f"| loss | accuracy (mean ± sd) | Δ vs {baseline} (95 % CI) | wins/ties/losses | p |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["loss"] == baseline:
            delta = wtl = p = "–"
        else:
            delta = f"{r['delta']:+.4f} ± {r['ci95']:.4f}"
            wtl = f"{r['wins']}/{r['ties']}/{r['losses']}"
            p = f"{r['p_wilcoxon']:.3g}"
        lines.append(f"| {r['loss']} | {r['mean']:.4f} ± {r['sd']:.4f} | {delta} | {wtl} | {p} |")
    return "\n".join(lines)


def _entry_table(entry: dict) -> str:
    """The markdown table of one (architecture, k) entry of :func:`small_data_benchmark`."""
    baseline = entry["baseline"]
    lines = [
        f"| loss | tuned setting | tuning acc | search cost | test acc (mean ± sd) | "
        f"Δ vs {baseline}, pt (95 % CI) | wins/ties/losses | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, record in entry["losses"].items():
        r = record["summary"]
        setting = _describe(record)
        if record["at_grid_edge"]:
            setting += f" (edge: {', '.join(record['at_grid_edge'])})"
        if name == baseline:
            delta = wtl = p = "–"
        else:
            delta = f"{100 * r['delta']:+.2f} ± {100 * r['ci95']:.2f}"
            wtl = f"{r['wins']}/{r['ties']}/{r['losses']}"
            p = f"{r['p_wilcoxon']:.2g}"
        lines.append(
            f"| {name} | {setting} | {record['tuning_score']:.4f} | {_cost(record)} | "
            f"{r['mean']:.4f} ± {r['sd']:.4f} | {delta} | {wtl} | {p} |"
        )
    return "\n".join(lines)


def summary_table(result: dict) -> str:
    """One row per (architecture, k): the tuned best classical loss and every other loss's Δ."""
    learned = list(result["settings"]["losses"])
    head = "".join(f" {name}: Δ pt (p) |" for name in learned)
    lines = [
        f"| architecture | k | best tuned classical loss (test acc) |{head}",
        "|---|---|---|" + "---|" * len(learned),
    ]
    for entry in result["results"]:
        base = entry["losses"][entry["baseline"]]
        cells = ""
        for name in learned:
            r = entry["losses"][name]["summary"]
            cells += f" {100 * r['delta']:+.2f} ± {100 * r['ci95']:.2f} ({r['p_wilcoxon']:.2g}) |"
        lines.append(
            f"| {entry['architecture']} | {entry['k']} | {entry['baseline']}: {_describe(base)} "
            f"({base['summary']['mean']:.4f}) |{cells}"
        )
    return "\n".join(lines)


def benchmark_markdown(result: dict) -> str:
    """The report of :func:`small_data_benchmark`: provenance, summary, one table per row."""
    s = result["settings"]
    grids = "; ".join(
        f"{name} over " + (", ".join(f"{k} ∈ {list(v)}" for k, v in grid.items()) or "nothing")
        for name, grid in s["baselines"].items()
    )
    lines = [
        "# Small-data benchmark",
        "",
        *provenance_lines(result["provenance"]),
        "",
        f"{s['n_tasks']} paired test tasks per k from the test split ({s['n_test']} images; "
        f"accuracy on the rest of it). Tuned per (loss, architecture, k) on "
        f"{s['n_tuning_tasks']} tasks from the training pool ({s['n_pool']} images; every "
        f"setting screened on {s['n_screening_tasks']} of them, each loss's "
        f"{s['n_finalists']} best (hyperparameters, lr) on all), then frozen: lr from "
        f"{s['grid_lr']} (extended up to {s['max_lr_extensions']} times while "
        f"the pick is on an edge) × steps ∈ {s['grid_steps']}, and each classical loss over "
        f"its own hyperparameters ({grids}). Learned losses get the same lr and steps grid. "
        f"Baseline: {s['baseline_rule']}. Search cost: the loss's share of the tuning wall "
        "time, plus its evolution time where recorded. Δ in accuracy points.",
        "",
        "## Summary",
        "",
        summary_table(result),
        "",
    ]
    for entry in result["results"]:
        lines += [
            f"## {entry['architecture']}, k = {entry['k']} "
            f"({s['architectures'][entry['architecture']]})",
            "",
            _entry_table(entry),
            "",
        ]
    return "\n".join(lines) + "\n"


def write_benchmark_report(result: dict, output) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``accuracy_vs_k.png`` into ``output``.

    Each file is written atomically; nothing else is touched. The figure needs matplotlib
    and is skipped without it.
    """
    output = Path(output)
    paths = {"json": output / "results.json", "markdown": output / "results.md"}
    atomic_write_bytes(paths["json"], (json.dumps(result, indent=1) + "\n").encode())
    atomic_write_bytes(paths["markdown"], benchmark_markdown(result).encode())
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return paths
    from .plotting import plot_benchmark

    buffer = io.BytesIO()
    plot_benchmark(result).savefig(buffer, format="png", dpi=110)
    paths["plot"] = output / "accuracy_vs_k.png"
    atomic_write_bytes(paths["plot"], buffer.getvalue())
    return paths


def run_benchmark(
    dataset: str = "fashion-mnist",
    *,
    data=None,
    label_column=None,
    data_home=None,
    pool_size: int | None = 4000,
    test_size: int | None = 3000,
    losses: Sequence[str] = (),
    output=None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    **options,
) -> dict:
    """Load a data set's splits, run :func:`small_data_benchmark`, write its report.

    Parameters
    ----------
    dataset : {"fashion-mnist", "digits", "cifar10"}
        Its training split is the pool, its test split the test images (digits: a
        stratified half each); see :func:`sklearn_mln.datasets.load_splits`.
    data, label_column : optional
        The user's own data file instead of ``dataset`` (split 50 / 50).
    data_home : path, optional
        Folder of the data set's files (see :mod:`sklearn_mln.datasets`).
    pool_size, test_size : int or None
        Stratified subsamples of the pool and of the test split (``None``: all).
    losses : sequence of str
        Learned losses to compare, each ``NAME=PATH`` or ``PATH`` (a ``.mln`` file or a
        pretrained name; the name defaults to the file's stem).
    output : path, optional
        Folder the report is written to, after every row (a long run keeps what it has
        done); nothing is written without it.
    threads : int, optional
        torch threads for the run, restored afterwards.
    log : callable, optional
        Receives progress lines.
    command : str, optional
        The command recorded in the provenance (default: this process's command line).
    **options
        Keyword arguments of :func:`small_data_benchmark`.
    """
    from ._resolve import resolve_loss
    from .datasets import load_splits

    resolved = {}
    for spec in losses:
        name, _, path = str(spec).rpartition("=")
        name = name or Path(path).stem
        if name in resolved:
            raise ValueError(f"Loss name {name!r} is given twice; use NAME=PATH.")
        resolved[name] = resolve_loss(path)
    seed = int(options.get("random_state", 0))
    X_pool, y_pool, X_test, y_test = load_splits(
        dataset, data_home=data_home, pool_size=pool_size, test_size=test_size, seed=seed,
        data=data, label_column=label_column,
    )  # fmt: skip
    _, y_pool = np.unique(y_pool, return_inverse=True)
    _, y_test = np.unique(y_test, return_inverse=True)

    def completed(result: dict) -> dict:
        result["settings"]["dataset"] = Path(data).stem if data is not None else dataset
        result["settings"]["loss_files"] = list(losses)
        if command is not None:
            result["provenance"]["command"] = command
        if output is not None:
            write_benchmark_report(result, output)
        return result

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        result = small_data_benchmark(
            X_pool, y_pool, X_test, y_test, resolved, log=log, on_row=completed, **options
        )
    finally:
        torch.set_num_threads(previous)
    if output is not None and log is not None:
        log(f"Wrote {output}/results.json, results.md and accuracy_vs_k.png.")
    return completed(result)
