"""Evolve one meta-loss on a mixture of settings: data sets x architectures x shots.

A loss meant to be ``MLNClassifier``'s default must serve every setting a user brings, so
its fitness is the mean over a mixture (:class:`sklearn_mln._evolution._state.MixtureProblem`):
every (data set, architecture, k) component draws ``--tasks`` tasks a generation from its
own pool, classifiers train with that architecture's SGD settings, and every candidate
sees the same tasks (common random numbers). Data: scikit-learn's digits (8x8) and the
Fashion-MNIST *train* split (the test split is the benchmark's); the MLP reads images
flattened. The final loss is the best of the shortlist (start included) re-evaluated on
``--eval-tasks`` fixed tasks of every component; its file records the run's settings,
per-component fitness of the start and of the result, history and provenance.

    python benchmarks/experiments/mixture_evolution.py --output mixture.mln   # the full mixture
    python benchmarks/experiments/mixture_evolution.py --datasets digits --architectures mlp \\
        --shots 1 5 --generations 2 --popsize 4 --output smoke.mln   # a smoke run

``--gain-cap PT`` scores a candidate by its gain over the start on the same tasks, each
component's gain capped at PT points, rather than by its mean accuracy: large gains at one
setting (often a step size that suits the loss better, which the benchmark's tuning gives
every loss) can then no longer pay for losses at another. ``mlp-deep``, an MLP with hidden
layers (32, 32), exists only here, so that a loss cannot fit one MLP's depth.

``--native-kernels`` trains through the compiled kernel (``set_config(native_kernels=True)``,
numba): the MLP components run faster, and the floats differ from the torch path's in the
last bits (a run resumes only with the same choice: it is part of the fingerprint).

With ``--checkpoint-path`` every generation's state is saved (atomically); the same command
run again continues from it to the same result, so a long run can span several working
stretches (``--max-time`` ends a stretch, a larger ``--generations`` extends a run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel

from sklearn_mln import MLP, MetaLossNetwork, config_context, load_meta_loss
from sklearn_mln.datasets import load_digits_images, load_fashion_mnist
from sklearn_mln.toolkit import (
    CMAStrategy,
    EvolutionState,
    InnerConfig,
    MetaLossSpec,
    MixtureProblem,
    Problem,
    architecture_factory,
    draw_seeds,
    evaluate_population,
    evolve,
    fingerprint,
    load_checkpoint,
    provenance,
    save_checkpoint,
    single_threaded_blas,
    start_point,
)

#: SGD per architecture: label smoothing 0.9's tuned step size on the CNN (the start of
#: ``--init``), and the MLP's most frequent label-smoothing pick in benchmark v2
#: (lr 0.03, 200 steps at k = 5 and 10)
TRAINING = {"cnn": {"lr": 0.3, "steps": 100}, "mlp": {"lr": 0.03, "steps": 200}}

#: a second flat-data architecture for the mixture only, so that a loss cannot fit one
#: MLP's depth; deliberately unlike ``mlp2`` (128, 64), the benchmark's unseen architecture.
#: It trains with the MLP's settings (and ``--mlp-lr``).
MIXTURE_ONLY_ARCHITECTURES = {"mlp-deep": (32, 32)}
TRAINING.update(dict.fromkeys(MIXTURE_ONLY_ARCHITECTURES, TRAINING["mlp"]))


def _factory(architecture: str, sample_shape: tuple, n_classes: int):
    """The library's architecture, or one of :data:`MIXTURE_ONLY_ARCHITECTURES`."""
    if architecture in MIXTURE_ONLY_ARCHITECTURES:
        hidden = MIXTURE_ONLY_ARCHITECTURES[architecture]
        return partial(MLP, math.prod(sample_shape), n_classes, hidden_sizes=hidden)
    return architecture_factory(architecture, sample_shape, n_classes)


def load_pool(name: str, pool_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 1, h, w)`` and labels of a data set's training pool."""
    if name == "digits":
        X, y = load_digits_images(return_X_y=True)
    else:
        X, y = load_fashion_mnist("train", return_X_y=True)
    if pool_size < len(y):
        rows = np.random.RandomState(seed).permutation(len(y))[:pool_size]
        X, y = X[rows], y[rows]
    return X, y.astype(np.int64)


def _lr_override(args, architecture: str, shots: int | None = None) -> dict:
    """The step size an architecture trains with: one for all k, or one per k of --shots."""
    lr = args.cnn_lr if architecture == "cnn" else args.mlp_lr
    if isinstance(lr, list):
        per_shot = dict(zip(args.shots, lr))
        lr = per_shot if shots is None else per_shot[shots]
    return {} if lr is None else {"lr": lr}


def build_mixture(
    args, spec: MetaLossSpec, rng: np.random.RandomState
) -> tuple[MixtureProblem, list[str]]:
    """One :class:`Problem` per (data set, architecture, shots), seeds drawn from ``rng``."""
    components, names = [], []
    for dataset in args.datasets:
        X, y = load_pool(dataset, args.pool_size, int(draw_seeds(rng, 1)[0]))
        n_classes = int(y.max()) + 1
        for architecture in args.architectures:
            shots_of = args.cnn_shots if architecture == "cnn" and args.cnn_shots else args.shots
            for shots in shots_of:
                training = {**TRAINING[architecture], **_lr_override(args, architecture, shots)}
                config = InnerConfig(
                    _factory(architecture, X.shape[1:], n_classes),
                    lr=training["lr"],
                    steps=training["steps"],
                )
                split_seed, reeval_seed = draw_seeds(rng, 2)
                components.append(
                    Problem.from_pool(
                        X,
                        y,
                        n_classes,
                        split_seed=int(split_seed),
                        validation_size=args.validation_size,
                        n_shots=shots,
                        n_ways=None,
                        n_tasks=args.tasks,
                        reeval_seed=int(reeval_seed),
                        n_reeval_tasks=args.eval_tasks,
                        spec=spec,
                        config=config,
                        vectorized=True,
                        n_jobs=args.n_jobs,
                        evaluate=evaluate_population,
                    )
                )
                names.append(f"{dataset}/{architecture}/k={shots}")
    return MixtureProblem(tuple(components)), names


#: options that change how a run executes, not what it computes
EXECUTION_OPTIONS = ("output", "generations", "max_time", "n_jobs", "quiet", "checkpoint_path")


def _saved_run(args) -> tuple[str | None, EvolutionState | None]:
    """The run's fingerprint (its settings) and its state in ``--checkpoint-path``."""
    if args.checkpoint_path is None:
        return None, None
    settings = {k: v for k, v in vars(args).items() if k not in EXECUTION_OPTIONS}
    # runs from before an option keep their fingerprint
    if settings.get("gain_cap") is None:
        settings.pop("gain_cap", None)
    if settings.get("native_kernels") is False:
        settings.pop("native_kernels")
    empty = np.zeros(0)
    run_id = fingerprint(empty, empty, empty, settings)
    saved = load_checkpoint(args.checkpoint_path, run_id)
    if saved is not None and saved.generation > args.generations:
        raise SystemExit(
            f"error: {args.checkpoint_path} holds {saved.generation} generations, more than "
            f"--generations {args.generations}"
        )
    return run_id, saved


def measure_noise(args, mixture, names, x0, rng) -> dict:
    """Signal and noise of a generation's comparisons, by the size of a step.

    The start ``x0`` and ``x0 + s * z`` for each ``s`` of ``--noise-sigmas`` (one random
    direction ``z`` of unit sd per coordinate, as CMA-ES draws at step size ``s``) are
    trained on the same ``N`` tasks of every component. Per component and step: the mean
    paired difference to the start (the signal a comparison should see) and its sd over
    tasks (the noise); and the standard error of the mixture's paired difference at
    ``--tasks`` tasks a component, which a generation must keep below the signal.
    """
    direction = rng.standard_normal(len(x0))
    candidates = np.stack([x0] + [x0 + step * direction for step in args.noise_sigmas])
    seed = int(draw_seeds(rng, 1)[0])
    components, per_step_variance = {}, np.zeros(len(args.noise_sigmas))
    for name, problem in zip(names, mixture.components):
        batch = problem.tasks(seed, args.measure_noise)
        accuracy, failed = problem.evaluate(
            candidates, problem.spec, problem.config, batch, problem.X_val,
            n_jobs=args.n_jobs, vectorized=problem.vectorized,
        )  # fmt: skip
        difference = 100 * (accuracy[1:] - accuracy[0])  # (steps, tasks), in points
        per_step_variance += difference.var(axis=1, ddof=1)
        components[name] = {
            "start_accuracy": float(accuracy[0].mean()),
            "mean_paired_pt": difference.mean(axis=1).tolist(),
            "sd_paired_pt": difference.std(axis=1, ddof=1).tolist(),
            "failed": failed.sum(axis=1).tolist(),
        }
    se = np.sqrt(per_step_variance / args.tasks) / len(components)
    signal = np.mean([c["mean_paired_pt"] for c in components.values()], axis=0)
    print(f"{'step':>8} {'mixture mean diff (pt)':>24} {'SE at --tasks (pt)':>20}")
    for step, mean, error in zip(args.noise_sigmas, signal, se):
        print(f"{step:>8} {mean:>24.3f} {error:>20.3f}")
    return {
        "tasks_measured": args.measure_noise,
        "steps": list(args.noise_sigmas),
        "components": components,
        "mixture_mean_paired_pt": signal.tolist(),
        "mixture_se_pt": se.tolist(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="the evolved loss's .mln file")
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"],
                        choices=("digits", "fashion-mnist"))  # fmt: skip
    parser.add_argument("--architectures", nargs="+", default=["mlp", "cnn"],
                        choices=sorted(TRAINING))  # fmt: skip
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5, 10, 20, 50])
    parser.add_argument(
        "--cnn-shots",
        nargs="+",
        type=int,
        default=None,
        help="k of the CNN components (default: --shots); the CNN is about "
        "50x the MLP's cost, so a few CNN components keep the mixture honest",
    )
    parser.add_argument("--cnn-lr", type=float, help="the CNN's step size (default 0.3)")
    parser.add_argument("--mlp-lr", type=float, nargs="+",
                        help="the MLP's step size (default 0.03), or one per k of --shots "
                        "(each k's tuned step: only what tuning cannot give counts)")  # fmt: skip
    parser.add_argument("--init", default="label_smoothing(smoothing=0.9)",
                        help="a named start, or a .mln file to warm-start from (its "
                        "architecture replaces the input flags)")  # fmt: skip
    parser.add_argument("--structure", default="per_class", choices=("per_class", "joint"))
    parser.add_argument("--true-class-input", action="store_true")
    parser.add_argument("--progress-input", action="store_true")
    parser.add_argument("--shots-input", action="store_true", help="the loss is told k")
    parser.add_argument("--popsize", type=int, default=12)
    parser.add_argument("--tasks", type=int, default=1, help="tasks per component a generation")
    parser.add_argument("--generations", type=int, default=50)
    parser.add_argument("--max-time", type=float, default=None, help="seconds")
    parser.add_argument("--sigma0", type=float, default=0.05)
    parser.add_argument("--gain-cap", type=float, metavar="PT",
                        help="fitness: the mean over components of the gain over the start "
                        "on the same tasks, each component's gain capped at PT points, so "
                        "no setting's loss is bought with another's gain (default: the mean "
                        "accuracy)")  # fmt: skip
    parser.add_argument("--native-kernels", action="store_true",
                        help="the loss through the compiled kernel (set_config(native_kernels="
                        "True); needs numba): faster MLP components, results that differ from "
                        "the torch path's in the last bits")  # fmt: skip
    parser.add_argument("--eval-tasks", type=int, default=8, help="per component")
    parser.add_argument("--pool-size", type=int, default=6000)
    parser.add_argument("--validation-size", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--checkpoint-path", help="save each generation here; resume from it")
    parser.add_argument("--measure-noise", type=int, metavar="N",
                        help="instead of evolving: measure the fitness noise on N tasks per "
                        "component and write it to --output as JSON")  # fmt: skip
    parser.add_argument("--noise-sigmas", nargs="+", type=float, default=[0.003, 0.01, 0.03],
                        help="step sizes --measure-noise compares the start with")  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.shots + (args.cnn_shots or [])) < 1:
        parser.error("--shots: every k must be at least 1")
    if args.mlp_lr is not None and len(args.mlp_lr) not in (1, len(args.shots)):
        parser.error("--mlp-lr: give one step size, or one per k of --shots")
    if args.mlp_lr is not None and len(args.mlp_lr) == 1:
        args.mlp_lr = args.mlp_lr[0]  # one value keeps the fingerprint of older runs

    with config_context(native_kernels=args.native_kernels):
        return run(args)


def run(args) -> int:
    """Evolve (or measure the noise) as ``args`` say; the loss and its file."""
    started = time.perf_counter()
    run_id, saved = _saved_run(args)
    rng = np.random.RandomState(args.seed)
    setup_rng_state = rng.get_state()
    (cma_seed,) = draw_seeds(rng, 1)
    spec = MetaLossSpec(
        structure=args.structure,
        n_classes=10,
        true_class_input=args.true_class_input,
        progress_input=args.progress_input,
        shots_input=args.shots_input,
    )
    init = load_meta_loss(args.init) if args.init.endswith(".mln") else args.init
    spec, x0 = start_point(init, spec, rng)  # a file brings its own architecture
    mixture, names = build_mixture(args, spec, rng)
    if args.gain_cap is not None:
        mixture = replace(mixture, reference=tuple(map(float, x0)), gain_cap=args.gain_cap / 100)
    if args.measure_noise:
        noise = measure_noise(args, mixture, names, x0, rng)
        noise.update(settings=vars(args), **provenance(seed=args.seed, started=started))
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(noise, indent=1) + "\n")
        return 0
    strategy_args = (x0, args.sigma0, args.popsize, int(cma_seed))
    if saved is None:
        strategy = CMAStrategy(*strategy_args)
        state = EvolutionState(setup_rng_state, rng.get_state(), strategy.state())
    else:
        strategy, state = CMAStrategy.from_state(saved.strategy, *strategy_args), saved
    on_generation = partial(save_checkpoint, args.checkpoint_path, run_id) if run_id else None
    with single_threaded_blas(), Parallel(n_jobs=args.n_jobs) as parallel:
        state, stop_reason = evolve(
            state,
            strategy,
            mixture,
            args.generations,
            max_time=args.max_time,
            on_generation=on_generation,
            verbose=0 if args.quiet else 1,
            parallel=parallel,
        )
        # the shortlist trained once: its per-component scores give the mixture's fitness too
        labels, candidates = state.shortlist.candidates(x0, strategy.mean)
        per_component, failed = mixture.component_fitness(
            candidates, mixture.reevaluation_tasks(), parallel
        )
    # the shortlist's first candidate is the start, the reference of --gain-cap
    reference = per_component[:, 0] if mixture.reference is not None else None
    scores, _ = mixture.combine(per_component, failed, reference_scores=reference)
    best = int(np.argmax(scores))
    net = MetaLossNetwork.from_spec(spec, candidates[best])
    net.metadata = {
        "evolved_by": "benchmarks/experiments/mixture_evolution.py",
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "training": {a: {**TRAINING[a], **_lr_override(args, a)} for a in args.architectures},
        "components": names,
        "generations": state.generation,
        "stop_reason": stop_reason,
        "reevaluation": {"labels": labels, "fitness": scores.tolist(), "chosen": labels[best]},
        "reevaluated_fitness": float(scores[best]),
        "component_fitness": {
            name: {"start": float(start), "evolved": float(evolved)}
            for name, (start, evolved) in zip(names, per_component[:, [0, best]])
        },
        "history": list(state.history),
        **provenance(seed=args.seed, started=started, threads=torch.get_num_threads()),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    net.save(args.output)
    summary = {k: net.metadata[k] for k in ("generations", "reevaluated_fitness", "stop_reason")}
    print(f"Saved {args.output}: {json.dumps(summary)}; chosen: {labels[best]}")
    for name, values in net.metadata["component_fitness"].items():
        delta = 100 * (values["evolved"] - values["start"])
        print(f"  {name}: start {values['start']:.4f}, evolved {values['evolved']:.4f} "
              f"({delta:+.2f} pt)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
