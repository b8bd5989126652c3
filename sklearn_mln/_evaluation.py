"""Paired comparison of losses on held-out small-data tasks.

Every loss trains on the same tasks from the same initial weights (a paired design), so
differences between losses are not drowned by task-to-task variance. Each classifier is
scored on the rest of the held-out split (its own training rows excluded).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ._inner import InnerConfig, make_task_batch, score_population
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
    that loss (tuned per loss, or all the same). Failed trainings count as accuracy 0.
    """
    rng = np.random.RandomState(random_state)
    n_classes = int(y.max()) + 1
    tasks = sample_tasks(class_indices(y, n_classes), n_tasks, n_shots, n_ways, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, n_tasks), X, y, y, val_is_source=True)
    results = {}
    with torch.random.fork_rng(devices=[]):
        for name, loss in losses.items():
            accuracy, _ = score_population(loss.per_sample, 1, configs[name], batch, X)
            results[name] = accuracy[0]
    return results


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


def format_table(rows: list[dict], baseline: str) -> str:
    """A markdown table of :func:`summarize` rows."""
    lines = [
        f"| loss | accuracy (mean ± sd) | Δ vs {baseline} (95 % CI) | wins/ties/losses | p |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        p = "–" if r["loss"] == baseline else f"{r['p_wilcoxon']:.3g}"
        delta = "–" if r["loss"] == baseline else f"{r['delta']:+.4f} ± {r['ci95']:.4f}"
        wtl = "–" if r["loss"] == baseline else f"{r['wins']}/{r['ties']}/{r['losses']}"
        lines.append(f"| {r['loss']} | {r['mean']:.4f} ± {r['sd']:.4f} | {delta} | {wtl} | {p} |")
    return "\n".join(lines)
