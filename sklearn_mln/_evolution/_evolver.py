"""MLNEvolver: evolve a meta-loss network with CMA-ES over sampled small-data tasks."""

from __future__ import annotations

import os
import time
import warnings
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, effective_n_jobs
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

from .._classifier._nets import resolve_module_factory, supports_population
from .._losses._meta_loss import (
    ACTIVATIONS,
    INPUTS,
    STRUCTURES,
    MetaLossNetwork,
    MetaLossSpec,
)
from .._losses._resolve import frozen_copy
from .._utils._docstrings import FIT_SECTIONS, fill_doc
from .._utils._provenance import provenance
from .._utils._threads import EVALUATION_THREADS, torch_threads
from .._utils._validation import check_random_state, check_sample_shape
from ._checkpoint import fingerprint, load_checkpoint, save_checkpoint
from ._inner import InnerConfig, make_module, make_task_batch
from ._parallel import evaluate_population, shared_with_workers, single_threaded_blas
from ._refine import refine, tasks_of
from ._state import EvolutionState, Problem, evolve, reevaluate_shortlist, start_point
from ._strategy import CMAStrategy
from ._tasks import class_indices, draw_seeds, sample_tasks


class MLNEvolver(BaseEstimator):
    """Evolve a meta-loss network with CMA-ES over sampled small-data tasks.

    ``fit`` splits the pool into a task source and a validation set (stratified). Each
    generation draws ``n_tasks`` small training sets (``n_shots`` per class) from the task
    source; every candidate loss trains one small classifier from scratch on each task
    (full-batch SGD, the same tasks and initial weights for every candidate), and its
    fitness is the classifiers' mean accuracy on the validation set. CMA-ES maximises it.

    Parameters
    ----------
    n_shots : int, default=10
        Training examples per class in each task.
    n_ways : int or None, default=None
        Classes per task; ``None`` uses every class.
    n_tasks : int, default=8
        Tasks per generation (every candidate is trained on each).
    popsize : int, default=16
        CMA-ES population size.
    n_generations : int, default=50
        Maximum number of generations.
    sigma0 : float, default=0.02
        Initial CMA-ES step size, in units of the flat parameter vector. Small, because
        around the cross-entropy start a larger step draws many candidates whose loss is
        zero for every confidently predicted sample (the anchor's relu clips them).
    init : str or MetaLossNetwork, default="cross_entropy"
        Starting point, one of ``"cross_entropy"``, ``"label_smoothing"``,
        ``"label_smoothing(smoothing=EPS)"``, ``"random"`` or a network.
        ``"cross_entropy"``: the anchored network that equals CE exactly;
        ``"label_smoothing"``: the anchored log-prob network equal to label smoothing 0.1;
        ``"label_smoothing(smoothing=0.9)"``: equal to label smoothing 0.9 -- with
        ``inner_lr`` set to that loss's tuned step size, evolution starts from the tuned
        classical optimum, and the shortlist keeps that start, so whatever beats it is the
        network's (see :func:`sklearn_mln.benchmark.small_data_benchmark` for the tuning);
        ``"random"``: random weights everywhere. A :class:`MetaLossNetwork` warm-starts
        from its weights and architecture (the architecture parameters are then ignored).
    structure, hidden_sizes, activation, inputs, anchor
        Architecture of the evolved network; see :class:`MetaLossNetwork`.
    true_class_input, progress_input, shots_input : bool, default=False
        Inputs of the evolved network beyond its prediction and label (the true class's
        prediction, the training progress, the examples per class of the task); see
        :class:`MetaLossNetwork`.
    module : None, torch.nn.Module class, instance or zero-argument callable, default=None
        The inner classifier. ``None``: the defaults of :class:`MLNClassifier` (MLP for
        flat features, small CNN for images).
    inner_lr : float, default=0.03
        Learning rate of the full-batch SGD that trains each inner classifier on its task.
    inner_steps : int, default=100
        Steps of that SGD: each inner classifier is trained this many times on its whole
        task (``n_shots`` per class).
    inner_momentum : float, default=0.9
        Momentum of that SGD.
    validation_size : float, default=0.5
        Share of the pool held out as the validation set fitness is measured on.
    n_reeval_tasks : int, default=16
        Size of the fixed task set on which the final shortlist is re-evaluated (see Notes)
        and of the task set :meth:`score` draws.
    refine_steps : int, default=0
        Gradient refinement after CMA-ES (``0``: none): this many Adam steps on the
        chosen loss, each following the gradient of the validation cross-entropy of
        classifiers trained with it on a fresh batch of ``n_tasks`` tasks, differentiated
        through their unrolled SGD steps (as in ML3 and EvoMAL's local search). The refined
        loss joins the re-evaluation and is kept only if it scores higher there. Memory
        grows with ``inner_steps``: every step of every task's training stays in the graph.
    refine_lr : float, default=0.003
        Adam's step size for the refinement, in units of the flat parameter vector.
    max_time : float or None, default=None
        Stop after this many seconds (checked between generations).
    diagonal : bool or "auto", default="auto"
        Separable CMA-ES; ``"auto"`` above 200 dimensions.
    vectorized : bool, default=True
        Train all classifiers of a chunk at once; ``False`` uses the one-at-a-time loop.
        A module that cannot be batched falls back to that loop with a ``UserWarning``.
    device : str, default="cpu"
        Torch device of the inner loop, e.g. ``"cuda"``.
    n_jobs : int or None, default=None
        joblib workers evaluating candidates; ``None`` means 1 unless in a
        :func:`joblib.parallel_config` context, ``-1`` all cores. Every process trains at
        one torch thread, so the result is the same for any ``n_jobs`` and any thread
        setting of the caller, which ``fit`` restores when it returns; use ``n_jobs`` to
        use more cores.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, the tasks, the initial weights and CMA-ES; ``None`` seeds them
        from fresh operating-system entropy. NumPy's and torch's global generators are
        never used.
    verbose : int, default=0
        ``0`` silent; ``>= 1`` a progress bar with best / mean fitness and sigma.
    checkpoint_path : str, path-like or None, default=None
        File the full state of the run is written to, atomically, after every generation
        (see Notes). If it exists when ``fit`` starts, the run resumes from it.

    Attributes
    ----------
    meta_loss_ : MetaLossNetwork
        The evolved loss (frozen). Its ``metadata`` is written by ``fit``: the parameters,
        the data's size and classes, the generations, the re-evaluated fitness and stop
        reason, and the provenance of :func:`sklearn_mln._utils._provenance.provenance` (commit
        and whether the tree was dirty, versions, the running command, seed, cores, torch
        threads, machine, the inner loop's device, date and ``wall_seconds`` of this call of
        ``fit``).
    history_ : list of dict
        Per generation: ``generation``, ``best_fitness``, ``mean_fitness``,
        ``median_fitness``, ``sigma``, ``seconds``, ``n_failures``.
    best_fitness_ : float
        Re-evaluated fitness of ``meta_loss_``.
    reevaluation_ : dict
        Shortlist labels and their re-evaluated fitness.
    refinement_ : list of dict
        With ``refine_steps``: per step, the validation loss before it and the gradient's
        norm (empty without refinement).
    stop_reason_ : str
    classes_ : ndarray
    n_features_in_ : int

    See Also
    --------
    MetaLossNetwork : The loss being evolved.
    MLNClassifier : Train a classifier with the evolved loss.

    Notes
    -----
    Generation fitness is a noisy estimate (a few tasks). ``meta_loss_`` is chosen from a
    shortlist -- the starting point, the final CMA-ES mean, the best candidate of each of
    the last 5 generations and the 3 best candidates ever seen -- by mean accuracy on
    ``n_reeval_tasks`` fixed tasks drawn once per fit; ties go to the earlier entry, so the
    starting point wins unless something beats it.

    A candidate whose loss goes non-finite, or whose classifier predicts a single class on
    the validation set, on any task gets fitness 0 and is counted in ``n_failures``.

    With ``checkpoint_path``, a run that was interrupted (killed, out of time, stopped by
    ``max_time``) continues where its last generation ended when ``fit`` is called again
    with the same data and parameters, and ends with the same ``meta_loss_`` and
    ``history_`` (apart from ``seconds``) as an uninterrupted run. ``n_jobs``, ``verbose``,
    ``max_time``, ``device``, ``vectorized`` and ``n_generations`` may change between the
    two calls (a larger ``n_generations`` extends a finished run); a checkpoint of other
    data or other parameters is refused with a ``ValueError``. The file is kept when
    ``fit`` ends: fitting again repeats only the final re-evaluation. Delete it to start
    over. Checkpoints are read without running code from them; see
    :mod:`sklearn_mln._evolution._checkpoint` for the format and the trust model.

    Examples
    --------
    >>> from sklearn_mln import MLNEvolver
    >>> from sklearn_mln.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> evo = MLNEvolver(n_shots=5, n_tasks=2, popsize=4, n_generations=2, inner_steps=20,
    ...                  n_reeval_tasks=2, random_state=0).fit(X[:400], y[:400])
    >>> len(evo.history_)
    2
    >>> 0.0 <= evo.score(X[400:800], y[400:800]) <= 1.0
    True
    """

    _parameter_constraints: dict = {
        "n_shots": [Interval(Integral, 1, None, closed="left")],
        "n_ways": [Interval(Integral, 2, None, closed="left"), None],
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "popsize": [Interval(Integral, 2, None, closed="left")],
        "n_generations": [Interval(Integral, 1, None, closed="left")],
        "sigma0": [Interval(Real, 0, None, closed="neither")],
        # a str beyond the options is a parameterised start, checked in fit
        "init": [StrOptions({"cross_entropy", "label_smoothing", "random"}), str, MetaLossNetwork],
        "structure": [StrOptions(set(STRUCTURES))],
        "hidden_sizes": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "inputs": [StrOptions(set(INPUTS))],
        "anchor": [StrOptions({"cross_entropy"}), None],
        "true_class_input": ["boolean"],
        "progress_input": ["boolean"],
        "shots_input": ["boolean"],
        "module": [None, callable, torch.nn.Module],
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "inner_steps": [Interval(Integral, 1, None, closed="left")],
        "inner_momentum": [Interval(Real, 0, 1, closed="left")],
        "validation_size": [Interval(Real, 0, 1, closed="neither")],
        "n_reeval_tasks": [Interval(Integral, 1, None, closed="left")],
        "refine_steps": [Interval(Integral, 0, None, closed="left")],
        "refine_lr": [Interval(Real, 0, None, closed="neither")],
        "max_time": [Interval(Real, 0, None, closed="neither"), None],
        "diagonal": ["boolean", StrOptions({"auto"})],
        "vectorized": ["boolean"],
        "device": [str],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "checkpoint_path": [str, os.PathLike, None],
    }

    def __init__(
        self,
        *,
        n_shots=10,
        n_ways=None,
        n_tasks=8,
        popsize=16,
        n_generations=50,
        sigma0=0.02,
        init="cross_entropy",
        structure="per_class",
        hidden_sizes=(8,),
        activation="tanh",
        inputs="log_probs",
        anchor="cross_entropy",
        true_class_input=False,
        progress_input=False,
        shots_input=False,
        module=None,
        inner_lr=0.03,
        inner_steps=100,
        inner_momentum=0.9,
        validation_size=0.5,
        n_reeval_tasks=16,
        refine_steps=0,
        refine_lr=0.003,
        max_time=None,
        diagonal="auto",
        vectorized=True,
        device="cpu",
        n_jobs=None,
        random_state=None,
        verbose=0,
        checkpoint_path=None,
    ):
        self.n_shots = n_shots
        self.n_ways = n_ways
        self.n_tasks = n_tasks
        self.popsize = popsize
        self.n_generations = n_generations
        self.sigma0 = sigma0
        self.init = init
        self.structure = structure
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.inputs = inputs
        self.anchor = anchor
        self.true_class_input = true_class_input
        self.progress_input = progress_input
        self.shots_input = shots_input
        self.module = module
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.inner_momentum = inner_momentum
        self.validation_size = validation_size
        self.n_reeval_tasks = n_reeval_tasks
        self.refine_steps = refine_steps
        self.refine_lr = refine_lr
        self.max_time = max_time
        self.diagonal = diagonal
        self.vectorized = vectorized
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_path = checkpoint_path

    # ------------------------------------------------------------------ validation helpers
    def _validate_pool(self, X, y):
        X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float32, y_numeric=False)
        check_sample_shape(self, X, reset=True)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError("MLNEvolver needs at least 2 classes; got 1 class.")
        n_ways = len(self.classes_) if self.n_ways is None else self.n_ways
        if n_ways > len(self.classes_):
            raise ValueError(f"n_ways={self.n_ways} exceeds the {len(self.classes_)} classes.")
        y_enc = encoder.transform(y)
        counts = np.bincount(y_enc)
        if counts.min() < self.n_shots + 1:
            worst = self.classes_[counts.argmin() :][:1].tolist()[0]  # a plain Python value
            raise ValueError(
                f"Every class needs at least n_shots + 1 = {self.n_shots + 1} samples (n_shots "
                f"for a task, at least one for validation); class {worst!r} has {counts.min()}."
            )
        return X, y_enc, n_ways

    def _spec(self, n_classes: int) -> MetaLossSpec:
        if isinstance(self.init, MetaLossNetwork):
            return self.init.spec  # a warm start brings its own architecture
        return MetaLossSpec(
            self.structure,
            n_classes,
            tuple(self.hidden_sizes),
            self.activation,
            self.inputs,
            self.anchor,
            bool(self.true_class_input),
            bool(self.progress_input),
            bool(self.shots_input),
        )

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    @fill_doc(fit_sections=FIT_SECTIONS)
    def fit(self, X, y):
        """Evolve a meta-loss on the pool ``X, y``.

        {fit_sections}
        """
        # every torch op of the fit at one thread: results then do not depend on the
        # caller's thread setting (restored after), and small nets run fastest so
        with torch_threads(EVALUATION_THREADS):
            return self._fit(X, y)

    def _fit(self, X, y):
        fit_started = time.perf_counter()
        X, y_enc, n_ways = self._validate_pool(X, y)
        run_id, saved = self._saved_run(X, y_enc)
        rng = check_random_state(self.random_state)
        if saved is not None:
            rng.set_state(saved.setup_rng_state)  # the saved run's set-up, replayed
        setup_rng_state = rng.get_state()
        problem, x0, strategy = self._set_up(X, y_enc, n_ways, rng, saved)
        if saved is None:
            state = EvolutionState(setup_rng_state, rng.get_state(), strategy.state())
        else:
            state = saved
        with (
            shared_with_workers(problem.X_val),
            single_threaded_blas(),
            Parallel(n_jobs=min(effective_n_jobs(self.n_jobs), self.popsize)) as parallel,
        ):
            state, self.stop_reason_ = evolve(
                state,
                strategy,
                problem,
                self.n_generations,
                max_time=self.max_time,
                on_generation=self._checkpoint_writer(run_id),
                verbose=self.verbose,
                parallel=parallel,
            )
            labels, candidates, scores = reevaluate_shortlist(
                state, strategy, problem, x0, parallel
            )
            self.refinement_ = []
            if self.refine_steps:
                refined, self.refinement_ = self._refine(
                    candidates[np.argmax(scores)], problem, state
                )
                score, _ = problem.fitness(refined[None], problem.reevaluation_tasks(), parallel)
                labels = [*labels, "gradient-refined"]
                candidates = np.vstack([candidates, refined])
                scores = np.append(scores, score)
        self._finalise(state, labels, candidates, scores, problem.spec, len(X), fit_started)
        return self

    def _refine(self, theta, problem, state) -> tuple[np.ndarray, list[dict]]:
        """The refinement's steps, with tasks drawn from the run's generator where
        evolution left it (so refinement changes nothing before it)."""
        if not problem.vectorized:
            raise ValueError("refine_steps needs a module the population path can batch.")
        rng = np.random.RandomState()
        rng.set_state(state.rng_state)
        seeds = draw_seeds(rng, self.refine_steps + 1)
        batches = tasks_of(problem, seeds[1:])
        sampler = np.random.RandomState(int(seeds[0]))
        return refine(
            theta, problem.spec, problem.config, batches, problem.X_val,
            lr=self.refine_lr, rng=sampler,
        )  # fmt: skip

    def _saved_run(self, X, y_enc) -> tuple[str | None, EvolutionState | None]:
        """The run's fingerprint and its state in ``checkpoint_path`` (``None``: start)."""
        if self.checkpoint_path is None:
            return None, None
        run_id = fingerprint(X, y_enc, self.classes_, self.get_params(deep=False))
        saved = load_checkpoint(self.checkpoint_path, run_id)
        if saved is not None and saved.generation > self.n_generations:
            raise ValueError(
                f"The checkpoint {str(self.checkpoint_path)!r} already holds "
                f"{saved.generation} generations, more than n_generations="
                f"{self.n_generations}."
            )
        return run_id, saved

    def _set_up(self, X, y_enc, n_ways, rng, saved) -> tuple[Problem, np.ndarray, CMAStrategy]:
        """The problem, the start point and CMA-ES (continued from ``saved``), from ``rng``."""
        split_seed, cma_seed, reeval_seed = draw_seeds(rng, 3)
        spec, x0 = start_point(self.init, self._spec(n_ways), rng)
        config = self._inner_config(X.shape[1:], n_ways)
        problem = Problem.from_pool(
            X,
            y_enc,
            len(self.classes_),
            split_seed=split_seed,
            validation_size=self.validation_size,
            n_shots=self.n_shots,
            n_ways=self.n_ways,
            n_tasks=self.n_tasks,
            reeval_seed=int(reeval_seed),
            n_reeval_tasks=self.n_reeval_tasks,
            spec=spec,
            config=config,
            vectorized=self._check_vectorizable(config, X[:2], stacklevel=4),
            n_jobs=self.n_jobs,
            evaluate=evaluate_population,  # looked up here: tests slow it down
        )
        args = (x0, self.sigma0, self.popsize, int(cma_seed), self.diagonal)
        if saved is None:
            return problem, x0, CMAStrategy(*args)
        try:
            return problem, x0, CMAStrategy.from_state(saved.strategy, *args)
        except ValueError as exc:
            raise ValueError(f"{str(self.checkpoint_path)!r}: {exc}") from None

    def _checkpoint_writer(self, run_id):
        if self.checkpoint_path is None:
            return None
        return partial(save_checkpoint, self.checkpoint_path, run_id)

    def _finalise(self, state, labels, candidates, scores, spec, n_samples, fit_started) -> None:
        """The fitted attributes: the re-evaluation's best candidate and the run's record."""
        best = int(np.argmax(scores))
        self.history_ = list(state.history)
        self.n_generations_ = len(self.history_)
        self.reevaluation_ = {"labels": labels, "fitness": scores.tolist(), "chosen": labels[best]}
        self.best_fitness_ = float(scores[best])
        if self.best_fitness_ <= 0:
            warnings.warn(
                "Every candidate loss failed on the re-evaluation tasks, the start included "
                "(classifiers went non-finite or predicted a single class): meta_loss_ is "
                "not a usable loss. Standardize flat features, or lower inner_lr.",
                ConvergenceWarning,
                stacklevel=5,  # the caller of fit
            )
        net = MetaLossNetwork.from_spec(spec, candidates[best])
        net.metadata = self._metadata(n_samples, fit_started)
        self.meta_loss_ = frozen_copy(net)

    def _inner_config(self, sample_shape, n_classes) -> InnerConfig:
        return InnerConfig(
            module_factory=resolve_module_factory(self.module, sample_shape, n_classes),
            lr=float(self.inner_lr),
            steps=int(self.inner_steps),
            momentum=float(self.inner_momentum),
            device=self.device,
        )

    def _check_vectorizable(
        self, config: InnerConfig, X_sample: np.ndarray, stacklevel: int = 3
    ) -> bool:
        if not self.vectorized:
            return False
        module = make_module(config.module_factory, 0)
        if supports_population(module, torch.as_tensor(X_sample)):
            return True
        warnings.warn(
            f"{type(module).__name__} cannot be batched (torch.func.vmap over "
            "functional_call failed or disagreed with the module); training one classifier "
            "at a time, which is much slower. Pass vectorized=False to choose this loop "
            "explicitly.",
            UserWarning,
            stacklevel=stacklevel,
        )
        return False

    def _metadata(self, n_samples: int, started: float) -> dict:
        from .._version import __version__

        params = {k: v for k, v in self.get_params().items() if k not in ("module", "init")}
        params["init"] = self.init if isinstance(self.init, str) else "MetaLossNetwork"
        params["hidden_sizes"] = list(self.hidden_sizes)
        if self.checkpoint_path is not None:
            params["checkpoint_path"] = str(self.checkpoint_path)
        return {
            "evolved_by": "MLNEvolver",
            "params": params,
            "n_samples": n_samples,
            "classes": [str(c) for c in self.classes_],
            "generations": len(self.history_),
            "reevaluated_fitness": self.best_fitness_,
            "stop_reason": self.stop_reason_,
            "package_version": __version__,
            **provenance(
                seed=int(self.random_state) if isinstance(self.random_state, Integral) else None,
                started=started,
                threads=torch.get_num_threads(),
                device=self.device,
            ),
        }

    # ------------------------------------------------------------------ score
    def score(self, X, y):
        """Meta-test: mean accuracy of classifiers trained with ``meta_loss_`` on fresh tasks.

        Draws ``n_reeval_tasks`` tasks of ``n_shots`` per class from ``X, y`` (data evolution
        never saw); each classifier is scored on the rest of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, c, h, w)
        y : array-like of shape (n_samples,)
            Labels among ``classes_``.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X, y = check_X_y(X, y, allow_nd=True, dtype=np.float32)
        check_sample_shape(self, X, reset=False)
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if len(unseen):
            raise ValueError(f"y has labels unseen during fit: {unseen[:5].tolist()}.")
        y_enc = np.searchsorted(self.classes_, y)
        n_ways = len(self.classes_) if self.n_ways is None else self.n_ways
        counts = np.bincount(y_enc, minlength=len(self.classes_))
        if counts.min() < self.n_shots + 1:
            raise ValueError(
                f"Every class needs at least n_shots + 1 = {self.n_shots + 1} samples to score; "
                f"class {self.classes_[counts.argmin() :][:1].tolist()[0]!r} has {counts.min()}."
            )
        rng = check_random_state(self.random_state)
        tasks = sample_tasks(
            class_indices(y_enc, len(self.classes_)),
            self.n_reeval_tasks,
            self.n_shots,
            self.n_ways,
            rng,
        )
        batch = make_task_batch(
            tasks, draw_seeds(rng, len(tasks)), X, y_enc, y_enc, val_is_source=True
        )
        config = self._inner_config(X.shape[1:], n_ways)
        accuracy, failed = evaluate_population(
            self.meta_loss_.get_flat_params()[None],
            self.meta_loss_.spec,
            config,
            batch,
            X,
            n_jobs=1,
            vectorized=self._check_vectorizable(config, X[:2]),
        )
        return float(accuracy.mean())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = self.device != "cpu"
        return tags
