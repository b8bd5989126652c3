"""The small-data benchmark: losses compared on few-shot tasks, each tuned on its own terms.

The protocol is :mod:`sklearn_mln.benchmark._protocol`, the tuning
:mod:`sklearn_mln.benchmark._tuning`, the result as values
:mod:`sklearn_mln.benchmark._result`, the statistics and report files
:mod:`sklearn_mln.benchmark._report`; this module is their public face.
"""

from . import _protocol
from ._protocol import (
    paired_accuracies,
    run_benchmark,
    shared_tasks,
    small_data_benchmark,
    task_rng,
)
from ._report import benchmark_markdown, comparison_table, summarize, write_benchmark_report
from ._result import (
    BenchmarkResult,
    BenchmarkRow,
    BenchmarkSettings,
    LossResult,
    PairedSummary,
    TimeSpent,
    TuningPoint,
)
from ._tuning import Setting, score_settings

#: each classical loss's own hyperparameter and the values the benchmark tunes it over
CLASSICAL_GRIDS = _protocol.CLASSICAL_GRIDS

__all__ = [
    "CLASSICAL_GRIDS",
    "BenchmarkResult",
    "BenchmarkRow",
    "BenchmarkSettings",
    "LossResult",
    "PairedSummary",
    "Setting",
    "TimeSpent",
    "TuningPoint",
    "benchmark_markdown",
    "comparison_table",
    "paired_accuracies",
    "run_benchmark",
    "score_settings",
    "shared_tasks",
    "small_data_benchmark",
    "summarize",
    "task_rng",
    "write_benchmark_report",
]
