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

The tuning itself is :mod:`sklearn_mln.benchmark._tuning`; the statistics and report files are
:mod:`sklearn_mln.benchmark._report`; the result's classes :mod:`sklearn_mln.benchmark._result`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._classifier._nets import ARCHITECTURES, architecture_factory
from .._evolution._inner import TaskBatch, make_task_batch
from .._evolution._tasks import class_indices, draw_seeds, sample_tasks
from .._losses._classical import CLASSICAL_LOSSES, ClassicalLoss
from .._utils._provenance import provenance
from ._report import describe_setting, summarize, write_benchmark_report
from ._result import (
    BenchmarkResult,
    BenchmarkRow,
    BenchmarkSettings,
    LossResult,
    PairedSummary,
    TimeSpent,
    TuningPoint,
)
from ._tuning import Setting, param_grid, score_settings, tune

#: each classical loss's own hyperparameter and the values the benchmark tunes it over
CLASSICAL_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "cross_entropy": {},
    "mse": {},
    "label_smoothing": {"smoothing": (0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95)},
    "poly1": {"epsilon": (-1.0, 1.0, 2.0, 4.0)},
    "focal": {"gamma": (0.5, 1.0, 2.0, 3.0)},
}
#: how a row's baseline is chosen, recorded with every run
BASELINE_RULE = "the classical loss with the best tuning (meta-train) score"


def task_rng(seed: int, purpose: int, k: int) -> np.random.RandomState:
    """An independent generator per (seed, purpose, k): tuning never shares the test stream."""
    return np.random.RandomState(np.random.SeedSequence([seed, purpose, k]).generate_state(4))


def shared_tasks(X: np.ndarray, y: np.ndarray, k: int, n_tasks: int, rng) -> TaskBatch:
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
    on_row: Callable[[BenchmarkResult], None] | None = None,
) -> BenchmarkResult:
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
        hyperparameters as well. (From Python, a mapping gives each its own grid, e.g.
        ``{"label_smoothing": {"smoothing": (0.1, 0.9)}}``, a smaller one for an expensive
        run.)
    architectures : sequence of str
        The classifiers compared: ``cnn`` (the default small CNN), ``mlp`` (the default
        MLP), ``cnn-wide`` and ``mlp2`` (wider ones, never seen by evolution).
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
        Receives the result so far (a :class:`BenchmarkResult`, like the return value)
        after each (architecture, k) row, so that a long run can save what it has done.

    Returns
    -------
    result : BenchmarkResult
        ``settings``, ``rows`` (one per (architecture, k)) and ``provenance`` (commit,
        versions, command, cores, wall time); ``result.to_dict()`` is JSON-serialisable.
    """
    started = time.perf_counter()
    losses = dict(losses or {})
    _check_inputs(y_pool, y_test, ks, baselines, losses)
    settings = BenchmarkSettings(
        architectures={a: ARCHITECTURES[a][0] for a in architectures},
        baselines=_baseline_grids(baselines),
        losses={name: repr(loss) for name, loss in losses.items()},
        ks=[int(k) for k in ks], n_tasks=int(n_tasks), n_tuning_tasks=int(n_tuning_tasks),
        grid_lr=sorted(float(v) for v in grid_lr), grid_steps=sorted(int(v) for v in grid_steps),
        max_lr_extensions=int(max_lr_extensions),
        n_screening_tasks=int(min(n_screening_tasks, n_tuning_tasks)),
        n_finalists=int(n_finalists), momentum=float(momentum), random_state=int(random_state),
        n_pool=int(len(y_pool)), n_test=int(len(y_test)), baseline_rule=BASELINE_RULE,
    )  # fmt: skip
    # the code that ran is the code at the start: commit and tree recorded then
    record = provenance(
        seed=int(random_state), started=started, threads=torch.get_num_threads(), device=device
    )
    rows = []
    for row in _rows(settings, (X_pool, y_pool, X_test, y_test), losses, device):
        rows.append(row)
        if log is not None:
            for name in row.losses:
                log(_progress_line(row, name))
        if on_row is not None:
            on_row(_result_so_far(settings, rows, record, started))
    return _result_so_far(settings, rows, record, started)


def _baseline_grids(
    baselines: Sequence[str] | Mapping[str, Mapping[str, Sequence[float]]],
) -> dict[str, dict[str, list[float]]]:
    """Each baseline's grid of its own hyperparameters: given, or :data:`CLASSICAL_GRIDS`'."""
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
    return {
        name: {key: [float(x) for x in values] for key, values in grid.items()}
        for name, grid in grids.items()
    }


def _rows(
    settings: BenchmarkSettings,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    losses: dict[str, nn.Module],
    device: str,
) -> Iterator[BenchmarkRow]:
    """Every row of a run, k by k: each loss tuned on pool tasks, then run on test tasks.

    The tuning and test tasks of a k, and the classifiers' initial weights, are shared by
    every architecture and loss, so that the rows' comparisons are paired.
    """
    X_pool, y_pool, X_test, y_test = data
    families = settings.baselines | dict.fromkeys(losses, {})
    modules = {
        (name, p): ClassicalLoss(name, **dict(p))
        for name, grid in settings.baselines.items()
        for p in param_grid(grid)
    } | {(name, ()): loss for name, loss in losses.items()}
    n_classes = int(max(y_pool.max(), y_test.max())) + 1
    factories = {
        a: architecture_factory(a, X_pool.shape[1:], n_classes) for a in settings.architectures
    }
    halving = dict(
        grid_lr=settings.grid_lr, grid_steps=settings.grid_steps,
        max_lr_extensions=settings.max_lr_extensions,
        n_screening_tasks=settings.n_screening_tasks, n_finalists=settings.n_finalists,
    )  # fmt: skip
    sgd = dict(momentum=settings.momentum, device=device)
    seed = settings.random_state
    for k in settings.ks:
        tuning = shared_tasks(X_pool, y_pool, k, settings.n_tuning_tasks, task_rng(seed, 0, k))
        test = shared_tasks(X_test, y_test, k, settings.n_tasks, task_rng(seed, 1, k))
        for arch, factory in factories.items():
            picks, screening, final = tune(
                families, modules, factory, tuning, X_pool, **halving, **sgd
            )
            chosen = [pick["setting"] for pick in picks.values()]
            test_scores = score_settings(chosen, modules, factory, test, X_test, **sgd)
            yield _row(arch, k, picks, (screening, final), test_scores, losses)


def _result_so_far(
    settings: BenchmarkSettings, rows: list[BenchmarkRow], record: dict, started: float
) -> BenchmarkResult:
    wall_seconds = round(time.perf_counter() - started, 2)
    return BenchmarkResult(settings, list(rows), {**record, "wall_seconds": wall_seconds})


def _row(arch, k, picks, tuning, test_scores, losses) -> BenchmarkRow:
    """The row of one (architecture, k) from :func:`tune`'s picks and scores (``tuning``:
    screening and final) and the picks' test scores."""
    screening, final = tuning
    classical = [name for name in picks if name not in losses]
    baseline = max(classical, key=lambda n: picks[n]["score"])  # first wins ties
    tested = {name: test_scores.accuracy[pick["setting"]].tolist() for name, pick in picks.items()}
    summaries = summarize({n: np.asarray(acc) for n, acc in tested.items()}, baseline)
    summary_of = {summary["loss"]: PairedSummary(**summary) for summary in summaries}
    entries = {}
    for name, pick in picks.items():
        setting = pick["setting"]
        evolution = getattr(losses.get(name), "metadata", {}).get("evolution_seconds")
        entries[name] = LossResult(
            **setting.record(),
            kind="learned" if name in losses else "classical",
            tuning_score=pick["score"],
            at_grid_edge=pick["at_edge"],
            lr_grid=pick["lr_grid"],
            tuning_grid=_tuning_points(name, screening, final),
            test_accuracy=tested[name],
            test_failed=int(test_scores.failed[setting].sum()),
            seconds=TimeSpent(pick["seconds"], test_scores.seconds[name], evolution),
            summary=summary_of[name],
        )
    return BenchmarkRow(arch, int(k), baseline, entries)


def _tuning_points(name: str, screening, final) -> list[TuningPoint]:
    """Every setting of loss ``name`` screened, with its score on all tasks if a finalist."""
    points = []
    for s, accuracy in screening.accuracy.items():
        if s.loss == name:
            finalist = s in final.accuracy
            points.append(
                TuningPoint(
                    **s.record(),
                    screening_score=float(accuracy.mean()),
                    score=float(final.accuracy[s].mean()) if finalist else None,
                    n_failed=int(final.failed[s].sum()) if finalist else None,
                )
            )
    return points


def _progress_line(row: BenchmarkRow, name: str) -> str:
    entry = row.losses[name]
    acc = np.asarray(entry.test_accuracy)
    edge = f" (at grid edge: {', '.join(entry.at_grid_edge)})" if entry.at_grid_edge else ""
    return (
        f"[{row.architecture} k={row.k}] {name}: {describe_setting(entry)}{edge}, "
        f"tuning {entry.tuning_score:.4f} "
        f"({entry.seconds.tuning:.1f} s); test {acc.mean():.4f} over {len(acc)} tasks, "
        f"{entry.test_failed} failed ({entry.seconds.test:.1f} s)"
    )


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
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Accuracy on ``n_tasks`` shared tasks for each loss at one SGD setting.

    ``y`` is encoded ``0 .. C-1``; each classifier is scored on the rest of ``X``. With
    ``progress``, a progress bar on stderr counts the tasks as they are done.
    """
    from tqdm.auto import tqdm

    batch = shared_tasks(X, y, n_shots, n_tasks, np.random.RandomState(random_state))
    settings = [Setting(name, (), float(lr), int(steps)) for name in losses]
    modules = {(name, ()): loss for name, loss in losses.items()}
    per_pass = max(1, -(-n_tasks // 10)) if progress else n_tasks  # 10 updates of the bar
    parts = {s: [] for s in settings}
    with tqdm(total=n_tasks, unit="task", desc="comparing", disable=not progress) as bar:
        for start in range(0, n_tasks, per_pass):
            part = batch.take(slice(start, start + per_pass))
            scores = score_settings(settings, modules, module_factory, part, X, momentum=momentum)
            for s in settings:
                parts[s].append(scores.accuracy[s])
            bar.update(part.n_tasks)
    return {s.loss: np.concatenate(parts[s]) for s in settings}


def run_benchmark(
    dataset: str = "fashion-mnist",
    *,
    data=None,
    label_column=None,
    standardize: bool = True,
    data_home=None,
    pool_size: int | None = 4000,
    test_size: int | None = 3000,
    losses: Sequence[str] = (),
    output=None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    **options,
) -> BenchmarkResult:
    """Load a data set's splits, run :func:`small_data_benchmark`, write its report.

    Parameters
    ----------
    dataset : {"fashion-mnist", "digits", "cifar10"}
        Its training split is the pool, its test split the test images (digits: a
        stratified half each); see :func:`sklearn_mln.datasets.load_splits`.
    data, label_column : optional
        The user's own data file instead of ``dataset`` (split 50 / 50).
    standardize : bool, default=True
        Scale flat features with the pool's statistics (images are left as they are); see
        :func:`sklearn_mln.datasets.load_splits`.
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

    Returns
    -------
    result : BenchmarkResult
        As :func:`small_data_benchmark` returns it, with the data set's name and the loss
        files in its settings and ``command`` in its provenance.
    """
    from .._losses._resolve import resolve_loss
    from ..datasets import load_splits

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
        data=data, label_column=label_column, standardize=standardize,
    )  # fmt: skip
    _, y_pool = np.unique(y_pool, return_inverse=True)
    _, y_test = np.unique(y_test, return_inverse=True)

    def completed(result: BenchmarkResult) -> BenchmarkResult:
        name = Path(data).stem if data is not None else dataset
        settings = replace(result.settings, dataset=name, loss_files=list(losses))
        recorded = (
            result.provenance if command is None else {**result.provenance, "command": command}
        )
        result = replace(result, settings=settings, provenance=recorded)
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
