"""Command line: ``python -m sklearn_mln evolve | evaluate | benchmark``.

``evolve`` meta-trains a loss on the pool split of a data set, then compares it with
cross-entropy and MSE on held-out tasks (the meta-test split, never seen by evolution),
prints the table and saves the loss file. ``benchmark`` is the small-data benchmark of
``benchmarks/small_data.py`` (see :func:`sklearn_mln._evaluation.small_data_benchmark`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

DATASETS = ("digits", "fashion-mnist", "cifar10")


def load_splits(dataset: str, data_home=None, pool_size=None, seed: int = 0):
    """``(X_pool, y_pool, X_test, y_test)``: evolution sees the pool only.

    Digits is split 50 / 50 (stratified); Fashion-MNIST and CIFAR-10 use their own
    train / test splits. ``pool_size`` subsamples the pool (stratified).
    """
    from sklearn.model_selection import train_test_split

    from . import datasets

    if dataset == "digits":
        X, y = datasets.load_digits_images(return_X_y=True)
        X_pool, X_test, y_pool, y_test = train_test_split(
            X, y, test_size=0.5, stratify=y, random_state=seed
        )
    else:
        loader = (
            datasets.load_fashion_mnist if dataset == "fashion-mnist" else datasets.load_cifar10
        )
        X_pool, y_pool = loader("train", data_home=data_home, return_X_y=True)
        X_test, y_test = loader("test", data_home=data_home, return_X_y=True)
    if pool_size is not None and pool_size < len(y_pool):
        X_pool, _, y_pool, _ = train_test_split(
            X_pool, y_pool, train_size=pool_size, stratify=y_pool, random_state=seed
        )
    return X_pool, y_pool, X_test, y_test


def _prepare(X: np.ndarray, classifier: str) -> np.ndarray:
    return X.reshape(len(X), -1) if classifier == "mlp" else X


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_mln",
        description="Evolve and evaluate meta-loss networks (learned loss functions).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p):
        p.add_argument(
            "--dataset",
            choices=DATASETS,
            default="digits",
            help="data set (default: digits, embedded in scikit-learn)",
        )
        p.add_argument(
            "--data-home",
            default=None,
            help="folder with Fashion-MNIST IDX files or CIFAR-10 python batches",
        )
        p.add_argument(
            "--classifier",
            choices=("auto", "mlp", "cnn"),
            default="auto",
            help="inner classifier: mlp on flattened pixels or the small cnn "
            "(default: mlp for digits, cnn otherwise)",
        )
        p.add_argument("--shots", type=int, default=10, help="training images per class")
        p.add_argument("--inner-steps", type=int, default=100, help="SGD steps per classifier")
        p.add_argument(
            "--inner-lr",
            type=float,
            default=None,
            help="SGD learning rate, momentum 0.9 (default: 0.1 for mlp, 0.03 for "
            "cnn: cross-entropy's best on digits pool tasks)",
        )
        p.add_argument(
            "--eval-tasks",
            type=int,
            default=50,
            help="held-out tasks for the comparison table (default: 50)",
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    evolve = sub.add_parser("evolve", help="evolve a loss, compare it, save it")
    data_options(evolve)
    evolve.add_argument("--ways", type=int, default=None, help="classes per task (default: all)")
    evolve.add_argument("--tasks", type=int, default=8, help="tasks per generation")
    evolve.add_argument("--popsize", type=int, default=16, help="CMA-ES population size")
    evolve.add_argument("--generations", type=int, default=60, help="generation budget")
    evolve.add_argument("--max-time", type=float, default=None, help="time budget in seconds")
    evolve.add_argument("--sigma0", type=float, default=0.02, help="initial CMA-ES step size")
    evolve.add_argument(
        "--init",
        choices=("cross_entropy", "label_smoothing", "random"),
        default="cross_entropy",
        help="starting point of evolution",
    )
    evolve.add_argument(
        "--structure",
        choices=("per_class", "joint"),
        default="per_class",
        help="one small net shared by every class, or one net over all classes",
    )
    evolve.add_argument(
        "--inputs",
        choices=("log_probs", "probs", "logits"),
        default="log_probs",
        help="what the meta-loss network sees of the prediction",
    )
    evolve.add_argument(
        "--anchor",
        choices=("cross_entropy", "none"),
        default="cross_entropy",
        help="relu(CE + g) (starts as exactly CE) or the free softplus(g)",
    )
    evolve.add_argument(
        "--hidden-sizes",
        type=int,
        nargs="+",
        default=[8],
        help="hidden layers of the meta-loss network (default: 8)",
    )
    evolve.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="subsample the pool to this many images (default: 4000 for "
        "fashion-mnist / cifar10, all for digits)",
    )
    evolve.add_argument("--n-jobs", type=int, default=-1, help="joblib workers (default: all)")
    evolve.add_argument(
        "--output", default=None, help="where to save the evolved loss (default: mln-<dataset>.mln)"
    )
    evolve.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="compare a saved loss with classical losses")
    data_options(evaluate)
    evaluate.add_argument("loss", help="path to a .mln file or a pretrained name")

    benchmark = sub.add_parser(
        "benchmark", help="tuned classical and evolved losses on fresh small-data test tasks"
    )
    _benchmark_options(benchmark)
    return parser


def _benchmark_options(p: argparse.ArgumentParser) -> None:
    from ._evaluation import ARCHITECTURES, BENCHMARK_BASELINES

    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    p.add_argument("--data-home", default=None, help="folder with the data set's files")
    p.add_argument(
        "--loss",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="an evolved loss to compare (a .mln file or a pretrained name); repeatable",
    )
    p.add_argument(
        "--baselines",
        nargs="+",
        choices=BENCHMARK_BASELINES,
        default=list(BENCHMARK_BASELINES),
        help="classical losses to compare with (default: all)",
    )
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    p.add_argument("--tasks", type=int, default=100, help="paired test tasks per k")
    p.add_argument("--tuning-tasks", type=int, default=20, help="training-split tasks for tuning")
    p.add_argument("--grid-lr", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    p.add_argument("--grid-steps", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument(
        "--architectures",
        nargs="+",
        choices=sorted(ARCHITECTURES),
        default=["cnn", "mlp", "cnn-wide"],
        help="; ".join(f"{k}: {v[0]}" for k, v in ARCHITECTURES.items()),
    )
    p.add_argument(
        "--pool-size",
        type=int,
        default=5000,
        help="training-split images for tuning tasks and their validation (default: 5000)",
    )
    p.add_argument(
        "--test-size", type=int, default=None, help="subsample the test split (default: all)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's); 1 is far faster on a machine busy with other jobs",
    )
    p.add_argument("--output", default="benchmarks/results/small_data")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _benchmark(args, argv) -> int:
    from pathlib import Path

    import torch
    from sklearn.model_selection import train_test_split

    from ._evaluation import small_data_benchmark, write_benchmark_report
    from ._meta_loss import ClassicalLoss, resolve_loss

    losses = {name: ClassicalLoss(name) for name in dict.fromkeys(args.baselines)}
    for spec in args.loss:
        name, _, path = spec.rpartition("=")
        name = name or Path(path).stem
        if name in losses:
            raise SystemExit(f"error: --loss name {name!r} is already taken; use NAME=PATH.")
        losses[name] = resolve_loss(path)
    X_pool, y_pool, X_test, y_test = load_splits(
        args.dataset, args.data_home, args.pool_size, args.seed
    )
    if args.test_size is not None and args.test_size < len(y_test):
        X_test, _, y_test, _ = train_test_split(
            X_test, y_test, train_size=args.test_size, stratify=y_test, random_state=args.seed
        )
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = small_data_benchmark(
        X_pool, y_pool, X_test, y_test, losses,
        architectures=args.architectures, ks=args.ks, n_tasks=args.tasks,
        n_tuning_tasks=args.tuning_tasks, grid_lr=args.grid_lr, grid_steps=args.grid_steps,
        momentum=args.momentum, random_state=args.seed, device=args.device, log=log,
    )  # fmt: skip
    result["settings"]["dataset"] = args.dataset
    result["settings"]["torch_threads"] = torch.get_num_threads()
    result["command"] = "python -m sklearn_mln benchmark " + " ".join(
        sys.argv[2:] if argv is None else argv[1:]
    )
    result["seconds"] = time.perf_counter() - started
    paths = write_benchmark_report(result, args.output)
    if log is not None:
        log(f"Wrote {', '.join(str(p) for p in paths.values())} ({result['seconds']:.0f} s).")
    return 0


def _inner_config(args, X: np.ndarray, n_classes: int):
    from ._evolver import resolve_module_factory
    from ._inner import InnerConfig

    return InnerConfig(
        resolve_module_factory(None, X.shape[1:], n_classes),
        lr=args.inner_lr,
        steps=args.inner_steps,
    )


def _compare(args, losses: dict, X_test, y_test) -> str:
    from ._evaluation import format_table, paired_accuracies, summarize

    classes, y_enc = np.unique(y_test, return_inverse=True)
    config = _inner_config(args, X_test, len(classes))
    accuracies = paired_accuracies(
        losses,
        X_test,
        y_enc,
        configs=dict.fromkeys(losses, config),
        n_shots=args.shots,
        n_tasks=args.eval_tasks,
        random_state=args.seed + 1,
    )
    return format_table(summarize(accuracies, "cross_entropy"), "cross_entropy")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "benchmark":
        return _benchmark(args, argv)
    if args.classifier == "auto":
        args.classifier = "mlp" if args.dataset == "digits" else "cnn"
    if args.inner_lr is None:
        args.inner_lr = 0.1 if args.classifier == "mlp" else 0.03
    from ._meta_loss import ClassicalLoss, resolve_loss

    baselines = {"cross_entropy": ClassicalLoss("cross_entropy"), "mse": ClassicalLoss("mse")}
    if args.command == "evaluate":
        _, _, X_test, y_test = load_splits(args.dataset, args.data_home, None, args.seed)
        losses = {
            **baselines,
            "label_smoothing": ClassicalLoss("label_smoothing"),
            "focal": ClassicalLoss("focal"),
            args.loss: resolve_loss(args.loss),
        }
        print(_compare(args, losses, _prepare(X_test, args.classifier), y_test))
        return 0

    from ._evolver import MLNEvolver

    pool_size = args.pool_size or (None if args.dataset == "digits" else 4000)
    X_pool, y_pool, X_test, y_test = load_splits(args.dataset, args.data_home, pool_size, args.seed)
    X_pool, X_test = _prepare(X_pool, args.classifier), _prepare(X_test, args.classifier)
    print(
        f"Evolving a meta-loss on {args.dataset}: pool {len(y_pool)} images, "
        f"{args.shots}-shot tasks, {args.classifier}, popsize {args.popsize} x "
        f"{args.tasks} tasks, up to {args.generations} generations.",
        flush=True,
    )
    started = time.perf_counter()
    evolver = MLNEvolver(
        n_shots=args.shots,
        n_ways=args.ways,
        n_tasks=args.tasks,
        popsize=args.popsize,
        n_generations=args.generations,
        sigma0=args.sigma0,
        init=args.init,
        structure=args.structure,
        inputs=args.inputs,
        anchor=None if args.anchor == "none" else args.anchor,
        hidden_sizes=tuple(args.hidden_sizes),
        inner_lr=args.inner_lr,
        inner_steps=args.inner_steps,
        max_time=args.max_time,
        n_jobs=args.n_jobs,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
    ).fit(X_pool, y_pool)
    seconds = time.perf_counter() - started
    print(
        f"Evolution: {len(evolver.history_)} generations in {seconds:.0f} s; chosen: "
        f"{evolver.reevaluation_['chosen']} (re-evaluated fitness {evolver.best_fitness_:.4f})."
    )
    print(
        f"\nHeld-out comparison ({args.eval_tasks} paired {args.shots}-shot tasks from the "
        f"{'held-out half' if args.dataset == 'digits' else 'test split'}):\n"
    )
    losses = {**baselines, "evolved": evolver.meta_loss_}
    print(_compare(args, losses, X_test, y_test))
    output = args.output or f"mln-{args.dataset}.mln"
    loss = evolver.meta_loss_
    loss.metadata["command"] = "python -m sklearn_mln " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    loss.metadata["dataset"] = args.dataset
    loss.metadata["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    loss.metadata["evolution_seconds"] = round(seconds, 1)
    loss.save(output)
    print(
        f"\nSaved the evolved loss to {output}; metadata: "
        f"{json.dumps({k: loss.metadata[k] for k in ('generations', 'reevaluated_fitness')})}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
