"""The small-data benchmark's result as values: the settings of a run, one row per
(architecture, k), one entry per loss in a row, and the run's provenance.

``to_dict`` gives the layout of ``results.json`` and ``from_dict`` reads it back, so the
results files committed before these classes existed load unchanged and a new run writes
the same layout.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path


def _without_unset(record: dict, *optional: str) -> dict:
    """``record`` less the ``optional`` keys that are None: a run that did not record them
    wrote no key, and writing ``null`` would change the layout of its file."""
    return {key: value for key, value in record.items() if value is not None or key not in optional}


@dataclass(frozen=True)
class BenchmarkSettings:
    """What a run compared and how: the arguments of the benchmark, as recorded.

    Attributes
    ----------
    architectures : dict of str to str
        Each classifier compared and its description.
    baselines : dict of str to dict
        Each classical loss and the grid of its own hyperparameters.
    losses : dict of str to str
        Each learned (or other) loss and its ``repr``.
    ks : list of int
        Training images per class, one row per architecture each.
    n_tasks, n_tuning_tasks : int
        Paired test tasks and tuning tasks per k.
    grid_lr : list of float
        The starting lr grid (each loss's may have grown; see :attr:`LossResult.lr_grid`).
    grid_steps : list of int
        SGD steps tried.
    max_lr_extensions, n_screening_tasks, n_finalists : int
        How far an lr grid may grow, and the successive halving of the tuning.
    momentum : float
        SGD momentum.
    random_state : int
        The seed of the tasks and of the classifiers' initial weights.
    n_pool, n_test : int
        Images in the training pool and in the test split.
    baseline_rule : str
        How a row's baseline is chosen.
    dataset : str or None
        The data set's name (recorded by :func:`run_benchmark`; ``None`` otherwise).
    loss_files : list of str or None
        The learned losses as given to :func:`run_benchmark` (``None`` otherwise).
    """

    architectures: dict[str, str]
    baselines: dict[str, dict[str, list[float]]]
    losses: dict[str, str]
    ks: list[int]
    n_tasks: int
    n_tuning_tasks: int
    grid_lr: list[float]
    grid_steps: list[int]
    max_lr_extensions: int
    n_screening_tasks: int
    n_finalists: int
    momentum: float
    random_state: int
    n_pool: int
    n_test: int
    baseline_rule: str
    dataset: str | None = None
    loss_files: list[str] | None = None

    def to_dict(self) -> dict:
        return _without_unset(asdict(self), "dataset", "loss_files")


@dataclass(frozen=True)
class TuningPoint:
    """One setting a loss was tuned over: screened on the first tuning tasks and, if it was
    a finalist, scored on all of them.

    Attributes
    ----------
    params : dict of str to float
        The loss's own hyperparameters (empty for none).
    lr : float
    steps : int
    screening_score : float
        Mean accuracy on the screening tasks.
    score : float or None
        Mean accuracy on all tuning tasks (``None``: not a finalist).
    n_failed : int or None
        Tuning tasks whose training diverged (``None``: not a finalist).
    """

    params: dict[str, float]
    lr: float
    steps: int
    screening_score: float
    score: float | None = None
    n_failed: int | None = None

    def to_dict(self) -> dict:
        return _without_unset(asdict(self), "score", "n_failed")


@dataclass(frozen=True)
class TimeSpent:
    """Wall seconds charged to one loss in one row.

    Attributes
    ----------
    tuning : float
        Its share of the tuning passes (its members' share of the batched passes).
    test : float
        Its share of the test passes.
    evolution : float or None
        The evolution time its file recorded (``None`` for a classical loss).
    """

    tuning: float
    test: float
    evolution: float | None


@dataclass(frozen=True)
class PairedSummary:
    """One loss against its row's baseline over the paired test tasks (a row of
    :func:`summarize`).

    Attributes
    ----------
    loss : str
    mean, sd : float
        Test accuracy over the tasks.
    delta, ci95 : float
        Mean paired difference to the baseline and the half-width of its 95 % CI.
    wins, ties, losses : int
        Tasks on which the loss beat, tied or lost to the baseline.
    p_wilcoxon : float
        Two-sided Wilcoxon signed-rank p-value (``nan`` without scipy).
    """

    loss: str
    mean: float
    sd: float
    delta: float
    ci95: float
    wins: int
    ties: int
    losses: int
    p_wilcoxon: float


@dataclass(frozen=True)
class LossResult:
    """One loss in one row: the setting tuning froze, how it was found, its test accuracy.

    Attributes
    ----------
    params : dict of str to float
        The tuned values of the loss's own hyperparameters.
    lr : float
        The tuned SGD learning rate.
    steps : int
        The tuned number of SGD steps.
    kind : {"classical", "learned"}
    tuning_score : float
        Mean accuracy of the tuned setting on all tuning tasks.
    at_grid_edge : list of str
        The tuned values that lie on an edge of their grid (``"lr"``, ``"steps"``, a
        hyperparameter's name).
    lr_grid : list of float
        The lr grid, as far as it grew.
    tuning_grid : list of TuningPoint
        Every setting tried.
    test_accuracy : list of float
        Accuracy on each test task, in the order of the tasks (paired across losses).
    test_failed : int
        Test tasks whose training diverged.
    seconds : TimeSpent
    summary : PairedSummary
        Against the row's baseline.
    """

    params: dict[str, float]
    lr: float
    steps: int
    kind: str
    tuning_score: float
    at_grid_edge: list[str]
    lr_grid: list[float]
    tuning_grid: list[TuningPoint]
    test_accuracy: list[float]
    test_failed: int
    seconds: TimeSpent
    summary: PairedSummary

    @classmethod
    def from_dict(cls, record: Mapping) -> LossResult:
        return cls(
            **{
                **record,
                "tuning_grid": [TuningPoint(**point) for point in record["tuning_grid"]],
                "seconds": TimeSpent(**record["seconds"]),
                "summary": PairedSummary(**record["summary"]),
            }
        )

    def to_dict(self) -> dict:
        # ``|`` keeps the keys where they are: the layout of the file is the fields' order
        return asdict(self) | {"tuning_grid": [point.to_dict() for point in self.tuning_grid]}


@dataclass(frozen=True)
class BenchmarkRow:
    """One (architecture, k) row: every loss tuned and tested on the same tasks.

    Attributes
    ----------
    architecture : str
    k : int
        Training images per class.
    baseline : str
        The classical loss with the best tuning score, which every summary is paired with.
    losses : dict of str to LossResult
        Classical losses first, then the learned ones, in the order given.
    """

    architecture: str
    k: int
    baseline: str
    losses: dict[str, LossResult]

    @property
    def baseline_result(self) -> LossResult:
        """The baseline's own entry of :attr:`losses`."""
        return self.losses[self.baseline]

    @classmethod
    def from_dict(cls, record: Mapping) -> BenchmarkRow:
        losses = {name: LossResult.from_dict(entry) for name, entry in record["losses"].items()}
        return cls(record["architecture"], record["k"], record["baseline"], losses)

    def to_dict(self) -> dict:
        return {
            "architecture": self.architecture,
            "k": self.k,
            "baseline": self.baseline,
            "losses": {name: entry.to_dict() for name, entry in self.losses.items()},
        }


@dataclass(frozen=True)
class BenchmarkResult:
    """What :func:`small_data_benchmark` returns, and what its ``results.json`` holds.

    Attributes
    ----------
    settings : BenchmarkSettings
    rows : list of BenchmarkRow
        One per (architecture, k), k by k (``"results"`` in the file).
    provenance : dict
        Commit, versions, command, machine, cores, date and wall time, as
        :func:`sklearn_mln.toolkit.provenance` records them.

    Examples
    --------
    >>> from sklearn_mln.benchmark import BenchmarkResult
    >>> result = BenchmarkResult.load("results.json")  # doctest: +SKIP
    >>> row = result.rows[0]  # doctest: +SKIP
    >>> row.baseline, row.baseline_result.summary.mean  # doctest: +SKIP
    """

    settings: BenchmarkSettings
    rows: list[BenchmarkRow]
    provenance: dict

    @classmethod
    def from_dict(cls, record: Mapping) -> BenchmarkResult:
        return cls(
            BenchmarkSettings(**record["settings"]),
            [BenchmarkRow.from_dict(row) for row in record["results"]],
            dict(record["provenance"]),
        )

    @classmethod
    def load(cls, path) -> BenchmarkResult:
        """Read a ``results.json`` file written by :func:`write_benchmark_report`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict:
        """The JSON-serialisable layout of ``results.json``."""
        return {
            "settings": self.settings.to_dict(),
            "results": [row.to_dict() for row in self.rows],
            "provenance": copy.deepcopy(self.provenance),
        }
