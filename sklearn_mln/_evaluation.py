"""Paired comparison of losses on held-out small-data tasks.

Every loss trains on the same tasks from the same initial weights (a paired design), so
differences between losses are not drowned by task-to-task variance. Each classifier is
scored on the rest of the held-out split (its own training rows excluded).

:func:`small_data_benchmark` builds the honest comparison of issue 5 on top of this: every
loss gets its own learning rate and number of steps, tuned on tasks from the training
split only and then frozen; the baseline an evolved loss must beat is the classical loss
with the best *tuning* score (choosing it by its test accuracy would be a selection bias);
the meta-test tasks come from the test split and are shared by every loss and architecture.
:func:`write_benchmark_report` writes the result as JSON, a markdown table and a plot.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._archive import atomic_write_bytes
from ._inner import InnerConfig, TaskBatch, make_task_batch, members_per_pass, score_population
from ._meta_loss import CLASSICAL_LOSSES
from ._modules import MLP, SmallCNN
from ._tasks import class_indices, draw_seeds, sample_tasks


def paired_accuracies(
    losses: Mapping[str, nn.Module],
    X: np.ndarray,
    y: np.ndarray,
    *,
    configs: Mapping[str, InnerConfig],
    n_shots: int,
    n_tasks: int,
    random_state: int,
    n_ways: int | None = None,
) -> dict[str, np.ndarray]:
    """Accuracy on ``n_tasks`` shared tasks for each loss: ``{name: (n_tasks,)}``.

    ``y`` is encoded ``0 .. C-1``; ``configs[name]`` is the classifier and SGD settings of
    that loss (tuned per loss, or all the same). Failed trainings keep their real accuracy.
    """
    rng = np.random.RandomState(random_state)
    n_classes = int(y.max()) + 1
    tasks = sample_tasks(class_indices(y, n_classes), n_tasks, n_shots, n_ways, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, n_tasks), X, y, y, val_is_source=True)
    return {name: score_tasks(loss, configs[name], batch, X)[0] for name, loss in losses.items()}


def _task_subset(batch: TaskBatch, index: slice) -> TaskBatch:
    return TaskBatch(
        batch.X_train[index], batch.y_train[index], batch.y_val[index], batch.init_seeds[index]
    )


def score_tasks(
    loss: nn.Module, config: InnerConfig, batch: TaskBatch, X_val: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy ``(n_tasks,)`` and failure flags of one loss on every task of ``batch``.

    The tasks train together in passes that keep the autograd graph inside the memory
    budget of :func:`~sklearn_mln._inner.members_per_pass` (a CNN on 50-shot tasks fits
    only a few members at a time). Failed trainings keep their real accuracy.
    """
    step = min(batch.n_tasks, members_per_pass(config, batch))
    accuracy, failed = [], []
    with torch.random.fork_rng(devices=[]):
        for start in range(0, batch.n_tasks, step):
            part = _task_subset(batch, slice(start, start + step))
            acc, fail = score_population(loss.per_sample, 1, config, part, X_val)
            accuracy.append(acc[0])
            failed.append(fail[0])
    return np.concatenate(accuracy), np.concatenate(failed)


def summarize(accuracies: Mapping[str, np.ndarray], baseline: str) -> list[dict]:
    """Per loss: mean, sd, and the paired difference to ``baseline`` with a 95 % CI,
    wins / ties / losses and a two-sided Wilcoxon signed-rank p-value."""
    ref = accuracies[baseline]
    rows = []
    for name, acc in accuracies.items():
        diff = acc - ref
        n = len(diff)
        se = diff.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        row = {
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
        rows.append(row)
    return rows


def _wilcoxon(diff: np.ndarray) -> float:
    if not np.any(diff != 0):
        return 1.0
    try:
        from scipy.stats import wilcoxon
    except ImportError:  # scipy is optional; the table shows "n/a"
        return float("nan")
    return float(wilcoxon(diff).pvalue)


def format_table(
    rows: list[dict], baseline: str, *, extra_columns: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    """A markdown table of :func:`summarize` rows.

    ``extra_columns`` adds columns after the loss name: ``{header: {loss: text}}``.
    """
    extra = dict(extra_columns or {})
    head = "".join(f" {h} |" for h in extra)
    lines = [
        f"| loss |{head} accuracy (mean ± sd) | Δ vs {baseline} (95 % CI) | wins/ties/losses | p |",
        "|---|" + "---|" * len(extra) + "---|---|---|---|",
    ]
    for r in rows:
        p = "–" if r["loss"] == baseline else f"{r['p_wilcoxon']:.3g}"
        delta = "–" if r["loss"] == baseline else f"{r['delta']:+.4f} ± {r['ci95']:.4f}"
        wtl = "–" if r["loss"] == baseline else f"{r['wins']}/{r['ties']}/{r['losses']}"
        cells = "".join(f" {column.get(r['loss'], '')} |" for column in extra.values())
        lines.append(
            f"| {r['loss']} |{cells} {r['mean']:.4f} ± {r['sd']:.4f} | {delta} | {wtl} | {p} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- small-data benchmark
#: name -> (description, constructor keyword arguments); the CNNs need images (n, c, h, w)
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "cnn": ("SmallCNN, channels (8, 16): the default classifier evolution trains", {}),
    "mlp": ("MLP, one hidden layer of 64", {"hidden_sizes": (64,)}),
    "cnn-wide": (
        "SmallCNN, channels (16, 32): never seen by evolution (transfer)",
        {"channels": (16, 32)},
    ),
    "mlp2": ("MLP, hidden layers (128, 64): never seen by evolution", {"hidden_sizes": (128, 64)}),
}
#: classical losses a benchmark compares with, in table order
BENCHMARK_BASELINES = ("cross_entropy", "mse", "label_smoothing", "focal")


def architecture_factory(
    name: str, sample_shape: tuple[int, ...], n_classes: int
) -> Callable[[], nn.Module]:
    """A picklable zero-argument factory of benchmark architecture ``name``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}.")
    kwargs = ARCHITECTURES[name][1]
    if name.startswith("cnn"):
        if len(sample_shape) != 3:
            raise ValueError(f"Architecture {name!r} needs images (c, h, w), got {sample_shape}.")
        return partial(SmallCNN, sample_shape[0], n_classes, sample_shape[1:], **kwargs)
    return partial(MLP, int(np.prod(sample_shape)), n_classes, **kwargs)


def tune_inner(
    loss: nn.Module,
    module_factory: Callable[[], nn.Module],
    batch: TaskBatch,
    X_val: np.ndarray,
    *,
    grid_lr: Sequence[float],
    grid_steps: Sequence[int],
    momentum: float = 0.9,
    device: str = "cpu",
) -> tuple[InnerConfig, list[dict]]:
    """Choose the SGD learning rate and number of steps of ``loss`` on tuning tasks.

    Every grid point trains all tasks of ``batch`` (the same tasks and initial weights);
    the best mean accuracy on ``X_val`` wins, ties going to the earlier grid point
    (smaller learning rate, then fewer steps). Returns the chosen configuration and the
    grid ``[{lr, steps, score, n_failed}]``.
    """
    grid = []
    best = None
    for lr in sorted(grid_lr):
        for steps in sorted(grid_steps):
            config = InnerConfig(
                module_factory, lr=float(lr), steps=int(steps), momentum=momentum, device=device
            )
            accuracy, failed = score_tasks(loss, config, batch, X_val)
            point = {
                "lr": float(lr),
                "steps": int(steps),
                "score": float(accuracy.mean()),
                "n_failed": int(failed.sum()),
            }
            grid.append(point)
            if best is None or point["score"] > best[1]["score"]:
                best = (config, point)
    return best[0], grid


def _rng(seed: int, purpose: int, k: int) -> np.random.RandomState:
    """An independent generator per (seed, purpose, k): tuning never shares the test stream."""
    return np.random.RandomState(np.random.SeedSequence([seed, purpose, k]).generate_state(4))


def _shared_tasks(X: np.ndarray, y: np.ndarray, k: int, n_tasks: int, rng) -> TaskBatch:
    tasks = sample_tasks(class_indices(y, int(y.max()) + 1), n_tasks, k, None, rng)
    return make_task_batch(tasks, draw_seeds(rng, n_tasks), X, y, y, val_is_source=True)


def small_data_benchmark(
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    losses: Mapping[str, nn.Module],
    *,
    architectures: Sequence[str] = ("cnn", "mlp", "cnn-wide"),
    ks: Sequence[int] = (1, 5, 10, 20, 50),
    n_tasks: int = 100,
    n_tuning_tasks: int = 20,
    grid_lr: Sequence[float] = (0.01, 0.03, 0.1),
    grid_steps: Sequence[int] = (50, 100, 200),
    momentum: float = 0.9,
    random_state: int = 0,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Compare losses on small-data tasks: tuned on the pool, tested on fresh test tasks.

    For each ``k`` (images per class), tuning tasks are drawn from the pool (scored on the
    rest of the pool) and test tasks from the test split (scored on the rest of the test
    split); both task sets and the classifiers' initial seeds are shared by every loss and
    architecture (a paired design). Each (loss, architecture, k) gets the learning rate and
    steps of :func:`tune_inner`, frozen for the test tasks, which tuning never sees. The
    baseline is the classical loss (of :data:`BENCHMARK_BASELINES` present in ``losses``)
    with the best tuning score. Labels are encoded ``0 .. C-1``; ``log`` receives one line
    per (architecture, k, loss). Returns a JSON-serialisable dict.
    """
    classical = [name for name in losses if name in CLASSICAL_LOSSES]
    if not classical:
        raise ValueError("The benchmark needs at least one classical loss as a baseline.")
    n_classes = int(max(y_pool.max(), y_test.max())) + 1
    for split, y in (("pool", y_pool), ("test split", y_test)):
        smallest = int(np.bincount(y, minlength=n_classes).min())
        if max(ks) >= smallest:
            raise ValueError(
                f"k={max(ks)} needs more than {max(ks)} images of every class in the {split}; "
                f"its smallest class has {smallest}."
            )
    factories = {a: architecture_factory(a, X_pool.shape[1:], n_classes) for a in architectures}
    results = []
    for k in ks:
        tuning = _shared_tasks(X_pool, y_pool, k, n_tuning_tasks, _rng(random_state, 0, k))
        test = _shared_tasks(X_test, y_test, k, n_tasks, _rng(random_state, 1, k))
        for arch in architectures:
            entry = {"architecture": arch, "k": int(k), "losses": {}}
            for name, loss in losses.items():
                started = time.perf_counter()
                config, grid = tune_inner(
                    loss, factories[arch], tuning, X_pool, grid_lr=grid_lr,
                    grid_steps=grid_steps, momentum=momentum, device=device,
                )  # fmt: skip
                tuned = time.perf_counter()
                accuracy, failed = score_tasks(loss, config, test, X_test)
                done = time.perf_counter()
                entry["losses"][name] = {
                    "lr": config.lr,
                    "steps": config.steps,
                    "tuning_score": max(p["score"] for p in grid),
                    "at_grid_edge": _at_edge(config, grid_lr, grid_steps),
                    "tuning_grid": grid,
                    "test_accuracy": accuracy.tolist(),
                    "test_failed": int(failed.sum()),
                    "seconds": {"tuning": tuned - started, "test": done - tuned},
                }
                if log is not None:
                    log(_progress_line(arch, k, name, entry["losses"][name]))
            scores = {n: entry["losses"][n]["tuning_score"] for n in classical}
            entry["baseline"] = max(classical, key=lambda n: scores[n])  # first wins ties
            accuracies = {n: np.asarray(v["test_accuracy"]) for n, v in entry["losses"].items()}
            for row in summarize(accuracies, entry["baseline"]):
                entry["losses"][row["loss"]]["summary"] = row
            results.append(entry)
    return {
        "settings": {
            "architectures": {a: ARCHITECTURES[a][0] for a in architectures},
            "losses": {n: repr(loss) for n, loss in losses.items()},
            "ks": [int(k) for k in ks],
            "n_tasks": int(n_tasks),
            "n_tuning_tasks": int(n_tuning_tasks),
            "grid_lr": sorted(float(v) for v in grid_lr),
            "grid_steps": sorted(int(v) for v in grid_steps),
            "momentum": float(momentum),
            "random_state": int(random_state),
            "n_pool": int(len(y_pool)),
            "n_test": int(len(y_test)),
            "baseline_rule": "the classical loss with the best tuning (meta-train) score",
        },
        "results": results,
    }


def _progress_line(arch: str, k: int, name: str, record: dict) -> str:
    acc = np.asarray(record["test_accuracy"])
    sd = acc.std(ddof=1) if len(acc) > 1 else 0.0
    edge = " (at grid edge)" if record["at_grid_edge"] else ""
    seconds = record["seconds"]
    return (
        f"[{arch} k={k}] {name}: lr {record['lr']:g}, {record['steps']} steps{edge}, tuning "
        f"{record['tuning_score']:.4f} ({seconds['tuning']:.1f} s); test {acc.mean():.4f} ± "
        f"{sd:.4f} over {len(acc)} tasks, {record['test_failed']} failed ({seconds['test']:.1f} s)"
    )


def _at_edge(config: InnerConfig, grid_lr: Sequence[float], grid_steps: Sequence[int]) -> bool:
    """Whether the chosen point lies on a border of the grid that could be extended."""
    lr_edge = len(grid_lr) > 1 and config.lr in (min(grid_lr), max(grid_lr))
    steps_edge = len(grid_steps) > 1 and config.steps in (min(grid_steps), max(grid_steps))
    return bool(lr_edge or steps_edge)


def benchmark_markdown(result: dict) -> str:
    """The tables of :func:`small_data_benchmark`, one per (architecture, k)."""
    s = result["settings"]
    lines = [
        "# Small-data benchmark",
        "",
        f"{s['n_tasks']} paired test tasks per k from the test split ({s['n_test']} images; "
        f"accuracy on the rest of it); lr ∈ {s['grid_lr']} × steps ∈ {s['grid_steps']} "
        f"tuned per (loss, architecture, k) on {s['n_tuning_tasks']} tasks from the training "
        f"pool ({s['n_pool']} images), then frozen. Baseline: {s['baseline_rule']}. "
        "Failed trainings (non-finite or one predicted class) keep their real accuracy; "
        "their counts are listed.",
        "",
    ]
    for entry in result["results"]:
        losses = entry["losses"]
        rows = [v["summary"] for v in losses.values()]
        extra = {
            "lr / steps": {
                n: f"{v['lr']:g} / {v['steps']}" + (" (edge)" if v["at_grid_edge"] else "")
                for n, v in losses.items()
            },
            "tuning acc": {n: f"{v['tuning_score']:.4f}" for n, v in losses.items()},
            "failed": {n: str(v["test_failed"]) for n, v in losses.items()},
        }
        lines += [
            f"## {entry['architecture']}, k = {entry['k']} "
            f"({s['architectures'][entry['architecture']]})",
            "",
            format_table(rows, entry["baseline"], extra_columns=extra),
            "",
        ]
    return "\n".join(lines) + "\n"


def benchmark_figure(result: dict):
    """Mean test accuracy (95 % CI of the mean) against k, one panel per architecture."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    architectures = list(result["settings"]["architectures"])
    fig = Figure(figsize=(4.5 * len(architectures), 3.8), layout="constrained")
    axes = fig.subplots(1, len(architectures), squeeze=False)[0]
    for ax, arch in zip(axes, architectures):
        entries = sorted((e for e in result["results"] if e["architecture"] == arch),
                         key=lambda e: e["k"])  # fmt: skip
        ks = [e["k"] for e in entries]
        for name in result["settings"]["losses"]:
            acc = [np.asarray(e["losses"][name]["test_accuracy"]) for e in entries]
            means = [a.mean() for a in acc]
            ci = [1.96 * a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0.0 for a in acc]
            ax.errorbar(ks, means, yerr=ci, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_title(arch)
        ax.set_xlabel("training images per class (k)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    fig.suptitle("mean test accuracy, 95 % CI of the mean (tuned lr and steps per loss)")
    return fig


def write_benchmark_report(result: dict, output) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``accuracy_vs_k.png`` into ``output``.

    Each file is written atomically; nothing else is touched.
    """
    output = Path(output)
    paths = {
        "json": output / "results.json",
        "markdown": output / "results.md",
        "plot": output / "accuracy_vs_k.png",
    }
    atomic_write_bytes(paths["json"], (json.dumps(result, indent=1) + "\n").encode())
    atomic_write_bytes(paths["markdown"], benchmark_markdown(result).encode())
    buffer = io.BytesIO()
    benchmark_figure(result).savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(paths["plot"], buffer.getvalue())
    return paths
