"""Building blocks for experiments: what the library's own benchmarks and research scripts use.

The estimators (:class:`~sklearn_mln.MLNEvolver`, :class:`~sklearn_mln.MLNClassifier`) are
the product; this module is the layer below them made importable, so a script that samples
tasks, trains a population with a loss, runs CMA-ES over a mixture of problems or writes
provenance does not reach into private modules. Names here follow the library's version:
a change to one is a change of the public API and is noted in the changelog.

Tasks and training
    :func:`class_indices`, :func:`sample_tasks`, :func:`draw_seeds`,
    :func:`make_task_batch`, :class:`InnerConfig`, :func:`score_reference`
    (one classifier at a time), :func:`evaluate_population` (the population path over
    joblib workers), :func:`single_threaded_blas`.
Classifier nets
    :func:`architecture_factory`, :func:`default_module_factory`,
    :func:`resolve_module_factory`, :data:`ARCHITECTURES`.
Losses
    :class:`MetaLossSpec` (a meta-loss's architecture), :data:`AUTO_TRAINING`
    (``MLNClassifier()``'s default settings), :func:`examples_per_class` and
    :func:`shots_feature` (what a shots-input loss is told, and the input it sees),
    :func:`meta_loss_per_sample` (a population of losses through plain autograd).
Evolution
    :class:`Problem`, :class:`MixtureProblem`, :class:`EvolutionState`,
    :func:`start_point`, :func:`evolve`, :class:`CMAStrategy`; a run's state on disk:
    :func:`fingerprint`, :func:`save_checkpoint`, :func:`load_checkpoint`.
Results
    :func:`provenance`, :func:`provenance_lines`, :func:`atomic_write_bytes`,
    :func:`write_result_files`, :func:`record_measurement`.
"""

from ._classifier import _estimator, _nets
from ._classifier._nets import architecture_factory, default_module_factory
from ._evolution._checkpoint import fingerprint, load_checkpoint, save_checkpoint
from ._evolution._evolver import resolve_module_factory
from ._evolution._inner import InnerConfig, make_task_batch, score_reference
from ._evolution._parallel import evaluate_population, single_threaded_blas
from ._evolution._state import EvolutionState, MixtureProblem, Problem, evolve, start_point
from ._evolution._strategy import CMAStrategy
from ._evolution._tasks import class_indices, draw_seeds, sample_tasks
from ._losses._meta_loss import (
    MetaLossSpec,
    examples_per_class,
    meta_loss_per_sample,
    shots_feature,
)
from ._utils._archive import atomic_write_bytes, write_result_files
from ._utils._provenance import provenance, provenance_lines, record_measurement

#: ``MLNClassifier()``'s training per kind of input: ``(loss, lr, epochs)``
AUTO_TRAINING = _estimator.AUTO_TRAINING
#: the named classifiers of the benchmark (``mlp``, ``cnn``, ``mlp2``, ``cnn-wide``)
ARCHITECTURES = _nets.ARCHITECTURES

__all__ = [
    "ARCHITECTURES",
    "AUTO_TRAINING",
    "CMAStrategy",
    "EvolutionState",
    "InnerConfig",
    "MetaLossSpec",
    "MixtureProblem",
    "Problem",
    "architecture_factory",
    "atomic_write_bytes",
    "class_indices",
    "default_module_factory",
    "draw_seeds",
    "evaluate_population",
    "evolve",
    "examples_per_class",
    "fingerprint",
    "load_checkpoint",
    "make_task_batch",
    "meta_loss_per_sample",
    "provenance",
    "provenance_lines",
    "record_measurement",
    "resolve_module_factory",
    "sample_tasks",
    "save_checkpoint",
    "score_reference",
    "shots_feature",
    "single_threaded_blas",
    "start_point",
    "write_result_files",
]
