"""One run of evolution as a value: the problem, the state, one generation's step.

The split evosax makes: a *problem* (:class:`Problem`: where tasks come from and how a
population is scored; :class:`MixtureProblem`: several problems scored as one) and a
*strategy* (:class:`~sklearn_mln._evolution._strategy.CMAStrategy`: ask / tell).
:class:`EvolutionState` is everything a run needs to continue between two generations;
:func:`step` advances it by one generation, :func:`evolve` until the run stops, and a
checkpoint (:mod:`sklearn_mln._evolution._checkpoint`) is that value on disk.
:class:`~sklearn_mln.MLNEvolver` sets a run up (:func:`split_pool`, :func:`start_point`),
starts or resumes it, evolves it and re-evaluates its :class:`Shortlist`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from joblib import Parallel
from sklearn.model_selection import train_test_split

from .._losses._classical import parse_classical_loss
from .._losses._meta_loss import MetaLossNetwork, MetaLossSpec, init_flat_params
from ._inner import InnerConfig, TaskBatch, make_task_batch
from ._strategy import CMAState, CMAStrategy
from ._tasks import class_indices, draw_seeds, sample_tasks

#: generations whose best candidate joins the final shortlist
LAST_GENERATIONS = 5
#: best-ever (by noisy generation fitness) candidates that join the final shortlist
TOP_EVER = 3


def start_point(init, spec: MetaLossSpec, rng) -> tuple[MetaLossSpec, np.ndarray]:
    """The architecture and first CMA-ES mean for ``MLNEvolver(init=...)``.

    ``init`` is ``"cross_entropy"``, ``"label_smoothing"`` (smoothing 0.1),
    ``"label_smoothing(smoothing=EPS)"``, ``"random"`` or a
    :class:`~sklearn_mln.MetaLossNetwork` to warm-start from (its own ``spec``).
    """
    if isinstance(init, MetaLossNetwork):
        return init.spec, init.get_flat_params()
    if init == "random":
        # drawn as for a free network: the output layer is random too
        return spec, init_flat_params(replace(spec, anchor=None), rng)
    smoothing = _start_smoothing(init)
    if spec.anchor != "cross_entropy":
        raise ValueError(f'init="{init}" needs anchor="cross_entropy".')
    if smoothing is None:
        return spec, init_flat_params(spec, rng)
    # the whole architecture, so a new field needs no line here; from_label_smoothing
    # refuses inputs other than log_probs
    architecture = {k: v for k, v in spec.to_dict().items() if k != "n_classes"}
    net = MetaLossNetwork.from_label_smoothing(
        spec.n_classes, smoothing, **architecture, random_state=rng
    )
    return net.spec, net.get_flat_params()


def _start_smoothing(init: str) -> float | None:
    """The label smoothing a named start equals; ``None`` for cross-entropy."""
    if init == "cross_entropy":
        return None
    try:
        loss = parse_classical_loss(init)
    except ValueError:
        loss = None
    if loss is None or loss.name != "label_smoothing":
        raise ValueError(
            f"init={init!r} is not a starting point: use 'cross_entropy', 'label_smoothing', "
            "'label_smoothing(smoothing=EPS)' (e.g. a tuned optimum), 'random' or a "
            "MetaLossNetwork."
        )
    return float(loss.params["smoothing"])


def split_pool(
    y: np.ndarray, validation_size: float, n_shots: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the task source and of the validation set, stratified by class."""
    source, val = train_test_split(
        np.arange(len(y)), test_size=validation_size, stratify=y, random_state=seed
    )
    source_counts = np.bincount(y[source], minlength=int(y.max()) + 1)
    if source_counts.min() < n_shots:
        raise ValueError(
            f"After holding out validation_size={validation_size} for validation, a class "
            f"has only {source_counts.min()} samples for tasks of n_shots={n_shots}; lower "
            "validation_size or n_shots."
        )
    return source, val


@dataclass(frozen=True)
class Problem:
    """The fixed side of a run: where tasks come from and how a population is scored.

    Tasks index rows of ``X`` directly (no copy of the task source). ``evaluate`` is
    :func:`~sklearn_mln._evolution._parallel.evaluate_population` or a stand-in with its signature.
    """

    X: np.ndarray
    y: np.ndarray
    by_class: list[np.ndarray]  # task-source rows of each class
    X_val: np.ndarray
    y_val: np.ndarray
    n_shots: int
    n_ways: int | None
    n_tasks: int
    reeval_seed: int
    n_reeval_tasks: int
    spec: MetaLossSpec
    config: InnerConfig
    vectorized: bool
    n_jobs: int | None
    evaluate: Callable

    @classmethod
    def from_pool(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        *,
        split_seed: int,
        validation_size: float,
        **settings,
    ) -> Problem:
        """A pool split (stratified, :func:`split_pool`) into task source and validation set.

        ``y`` holds encoded labels ``0 .. n_classes - 1``; ``settings`` are the remaining
        fields (``n_shots``, ``n_tasks``, ``spec``, ``config``, ...).
        """
        source, val = split_pool(y, validation_size, settings["n_shots"], split_seed)
        return cls(
            X=X,
            y=y,
            by_class=[source[rows] for rows in class_indices(y[source], n_classes)],
            X_val=X[val],
            y_val=y[val],
            **settings,
        )

    def generation_tasks(self, seed: int) -> TaskBatch:
        """One generation's ``n_tasks`` tasks, drawn from ``seed``."""
        return self.tasks(seed, self.n_tasks)

    def tasks(self, seed: int, n_tasks: int) -> TaskBatch:
        """``n_tasks`` tasks and their classifiers' initial seeds, all drawn from ``seed``."""
        rng = np.random.RandomState(seed)
        tasks = sample_tasks(self.by_class, n_tasks, self.n_shots, self.n_ways, rng)
        return make_task_batch(tasks, draw_seeds(rng, len(tasks)), self.X, self.y, self.y_val)

    def reevaluation_tasks(self) -> TaskBatch:
        """The fixed tasks the final shortlist is re-evaluated on."""
        return self.tasks(self.reeval_seed, self.n_reeval_tasks)

    def fitness(
        self, thetas: np.ndarray, batch: TaskBatch, parallel: Parallel | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean validation accuracy of each candidate (0 if it failed on any task), failures."""
        accuracy, failed = self.evaluate(
            thetas,
            self.spec,
            self.config,
            batch,
            self.X_val,
            n_jobs=self.n_jobs,
            vectorized=self.vectorized,
            parallel=parallel,
        )
        failed = failed.any(axis=1)
        return np.where(failed, 0.0, accuracy.mean(axis=1)), failed


@dataclass(frozen=True)
class MixtureProblem:
    """Several problems scored as one: a candidate's fitness is its mean over them.

    A loss meant to serve many settings (architectures, numbers of shots, data sets) is
    evolved on all of them at once: each component is a :class:`Problem` with its own pool,
    classifier and SGD settings, every candidate sees the same tasks of every component in a
    generation (common random numbers), and a candidate that fails on any task of any
    component scores 0, as within one problem. Components share the meta-loss architecture.

    With a ``reference`` (flat parameters, usually the start), the fitness is instead the
    mean over components of a candidate's *gain* over the reference, scored on the same
    tasks in the same generation, each component's gain capped at ``gain_cap``: a
    candidate cannot buy a loss at one setting with a larger gain at another, which a plain
    mean rewards (gains at k = 1 from a step size that suits the loss better are large, and
    the benchmark's tuning of the step size takes them away). A failed candidate's gain
    is -1, below any accuracy difference.
    """

    components: tuple[Problem, ...]
    reference: tuple[float, ...] | None = None
    gain_cap: float = float("inf")

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("A mixture needs at least one problem.")
        specs = {p.spec for p in self.components}
        if len(specs) > 1:
            raise ValueError(f"The components' meta-loss architectures differ: {specs}.")

    @property
    def spec(self) -> MetaLossSpec:
        return self.components[0].spec

    def generation_tasks(self, seed: int) -> tuple[TaskBatch, ...]:
        """Each component's tasks of one generation, from seeds drawn from ``seed``."""
        seeds = draw_seeds(np.random.RandomState(seed), len(self.components))
        return tuple(p.generation_tasks(int(s)) for p, s in zip(self.components, seeds))

    def reevaluation_tasks(self) -> tuple[TaskBatch, ...]:
        return tuple(p.reevaluation_tasks() for p in self.components)

    def fitness(
        self,
        thetas: np.ndarray,
        batches: tuple[TaskBatch, ...],
        parallel: Parallel | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean over the components of each candidate's fitness (0 if it failed anywhere),
        or of its capped gain over ``reference`` (-1 if it failed)."""
        if self.reference is None:
            return self.combine(*self.component_fitness(thetas, batches, parallel))
        with_reference = np.vstack([thetas, np.asarray(self.reference)[None]])
        scores, failed = self.component_fitness(with_reference, batches, parallel)
        return self.combine(scores[:, :-1], failed[:-1], reference_scores=scores[:, -1])

    def component_fitness(
        self,
        thetas: np.ndarray,
        batches: tuple[TaskBatch, ...],
        parallel: Parallel | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each component's fitness of each candidate, shape (n_components, n_candidates),
        and whether a candidate failed on any component."""
        scores, failures = zip(
            *(p.fitness(thetas, b, parallel) for p, b in zip(self.components, batches))
        )
        return np.stack(scores), np.any(failures, axis=0)

    def combine(
        self, scores: np.ndarray, failed: np.ndarray, reference_scores: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The mixture's fitness from :meth:`component_fitness`'s output; with
        ``reference_scores`` (each component's score of the reference on the same tasks),
        the mean capped gain over it."""
        if reference_scores is None:
            return np.where(failed, 0.0, scores.mean(axis=0)), failed
        gains = np.minimum(scores - np.asarray(reference_scores)[:, None], self.gain_cap)
        return np.where(failed, -1.0, gains.mean(axis=0)), failed


@dataclass(frozen=True)
class Shortlist:
    """Candidates for the final re-evaluation (see :class:`~sklearn_mln.MLNEvolver`'s Notes).

    ``generation_best`` holds ``(generation, theta)`` of the last :data:`LAST_GENERATIONS`
    generations, ``top`` ``(fitness, generation, theta)`` of the :data:`TOP_EVER` best.
    """

    generation_best: tuple[tuple[int, np.ndarray], ...] = ()
    top: tuple[tuple[float, int, np.ndarray], ...] = ()

    def add(self, generation: int, thetas: np.ndarray, fitness: np.ndarray) -> Shortlist:
        best = int(np.argmax(fitness))
        generation_best = (*self.generation_best, (generation, thetas[best]))
        top = sorted(
            [*self.top, (float(fitness[best]), generation, thetas[best])], key=lambda t: -t[0]
        )
        return Shortlist(generation_best[-LAST_GENERATIONS:], tuple(top[:TOP_EVER]))

    def candidates(self, x0: np.ndarray, mean: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Labels and stacked vectors: the start, the final mean, then the shortlist."""
        labels, candidates = ["start", "final mean"], [x0, mean]
        for generation, theta in self.generation_best:
            labels.append(f"best of generation {generation}")
            candidates.append(theta)
        for _, generation, theta in self.top:
            label = f"best of generation {generation}"
            if label not in labels:
                labels.append(label)
                candidates.append(theta)
        return labels, np.stack(candidates)


@dataclass(frozen=True)
class EvolutionState:
    """A run between two generations: what :func:`step` advances and a checkpoint holds.

    Attributes
    ----------
    setup_rng_state : tuple
        The evolver's generator before set-up (:func:`numpy.random.get_state` form):
        replaying it rebuilds the split, the seeds and the start, so a run seeded from the
        operating system resumes as itself.
    rng_state : tuple
        That generator after the last generation; each generation draws its tasks' seed
        from it.
    strategy : CMAState
        CMA-ES after the last generation.
    shortlist : Shortlist
    history : tuple of dict
        One record per generation (``MLNEvolver.history_``).
    stop_reason : str or None
        ``"cma: ..."`` once CMA-ES's own criteria fired (the run is over), else ``None``;
        ``n_generations`` and ``max_time`` are the caller's to apply.
    """

    setup_rng_state: tuple
    rng_state: tuple
    strategy: CMAState
    shortlist: Shortlist = Shortlist()
    history: tuple[dict, ...] = ()
    stop_reason: str | None = None

    @property
    def generation(self) -> int:
        """Generations done (the next one's index)."""
        return len(self.history)


def step(
    state: EvolutionState,
    strategy: CMAStrategy,
    problem: Problem | MixtureProblem,
    parallel: Parallel | None = None,
) -> EvolutionState:
    """``state`` one generation on: draw tasks, ask, evaluate, tell, record.

    ``strategy`` is ``state.strategy`` in working form (pycma's object is mutable): it is
    advanced in place, and the returned state holds its new :meth:`~CMAStrategy.state`.
    """
    tick = time.perf_counter()
    rng = np.random.RandomState()
    rng.set_state(state.rng_state)
    batch = problem.generation_tasks(draw_seeds(rng, 1)[0])
    thetas = strategy.ask()
    fitness, failed = problem.fitness(thetas, batch, parallel)
    strategy.tell(thetas, fitness)
    record = {
        "generation": state.generation,
        "best_fitness": float(fitness.max()),
        "mean_fitness": float(fitness.mean()),
        "median_fitness": float(np.median(fitness)),
        "sigma": strategy.sigma,
        "seconds": time.perf_counter() - tick,
        "n_failures": int(failed.sum()),
    }
    stop = strategy.stop()
    return replace(
        state,
        rng_state=rng.get_state(),
        strategy=strategy.state(),
        shortlist=state.shortlist.add(state.generation, thetas, fitness),
        history=(*state.history, record),
        stop_reason="cma: " + ", ".join(stop) if stop else None,
    )


def evolve(
    state: EvolutionState,
    strategy: CMAStrategy,
    problem: Problem | MixtureProblem,
    n_generations: int,
    *,
    max_time: float | None = None,
    on_generation: Callable[[EvolutionState], None] | None = None,
    verbose: int = 0,
    parallel: Parallel | None = None,
) -> tuple[EvolutionState, str]:
    """:func:`step` until ``n_generations``, CMA-ES's own stop or ``max_time`` seconds.

    ``on_generation`` is given every new state (a checkpoint writer). Returns the last
    state and the stop reason: ``"n_generations"``, ``"max_time"`` or ``"cma: ..."``.
    """
    started = time.perf_counter()
    with _Progress(n_generations, verbose, initial=state.generation) as bar:
        while state.stop_reason is None and state.generation < n_generations:
            state = step(state, strategy, problem, parallel)
            bar.update(state.history[-1])
            if on_generation is not None:
                on_generation(state)
            out_of_time = max_time is not None and time.perf_counter() - started > max_time
            if state.stop_reason is None and out_of_time:
                return state, "max_time"
    return state, state.stop_reason or "n_generations"


def reevaluate_shortlist(
    state: EvolutionState,
    strategy: CMAStrategy,
    problem: Problem | MixtureProblem,
    x0: np.ndarray,
    parallel: Parallel | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, vectors and fixed-task fitness of the final candidates (start included)."""
    labels, candidates = state.shortlist.candidates(x0, strategy.mean)
    scores, _ = problem.fitness(candidates, problem.reevaluation_tasks(), parallel)
    return labels, candidates, scores


class _Progress:
    """A tqdm bar with best / mean fitness and sigma at ``verbose >= 1``; silent otherwise."""

    def __init__(self, total: int, verbose: int, initial: int = 0) -> None:
        self.total, self.verbose, self.initial, self.bar = total, verbose, initial, None

    def __enter__(self):
        if self.verbose >= 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.initial,
                desc="evolving",
                unit="gen",
                file=sys.stderr,
            )
        return self

    def update(self, record: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix(
                best=f"{record['best_fitness']:.4f}",
                mean=f"{record['mean_fitness']:.4f}",
                sigma=f"{record['sigma']:.3g}",
                fails=record["n_failures"],
                refresh=False,
            )
            self.bar.update(1)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
