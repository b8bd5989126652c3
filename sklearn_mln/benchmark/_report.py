"""Statistics and reports of the small-data benchmark: paired differences, markdown tables,
the report files (JSON, markdown, figure) written atomically."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._utils._archive import atomic_write_bytes
from .._utils._provenance import provenance_lines
from ._result import BenchmarkResult, BenchmarkRow, LossResult


def summarize(accuracies: Mapping[str, np.ndarray], baseline: str) -> list[dict]:
    """Per loss: mean, sd, and the paired difference to ``baseline`` with a 95 % CI,
    wins / ties / losses and a two-sided Wilcoxon signed-rank p-value."""
    ref = accuracies[baseline]
    rows = []
    for name, acc in accuracies.items():
        diff = acc - ref
        n = len(diff)
        se = diff.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        rows.append(
            {
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
        )
    return rows


def _wilcoxon(diff: np.ndarray) -> float:
    if not np.any(diff != 0):
        return 1.0
    try:
        from scipy.stats import wilcoxon
    except ImportError:  # scipy is optional; the table shows "nan"
        return float("nan")
    return float(wilcoxon(diff).pvalue)


def describe_setting(entry: LossResult) -> str:
    params = ", ".join(f"{k} {v:g}" for k, v in entry.params.items())
    return (params + ", " if params else "") + f"lr {entry.lr:g}, {entry.steps} steps"


def _cost(entry: LossResult) -> str:
    text = f"{entry.seconds.tuning:.0f} s"
    if entry.seconds.evolution:
        text += f" + {entry.seconds.evolution / 60:.0f} min evolution"
    return text


def comparison_table(rows: list[dict], baseline: str) -> str:
    """A markdown table of :func:`summarize` rows (accuracy, paired Δ to ``baseline``)."""
    lines = [
        f"| loss | accuracy (mean ± sd) | Δ vs {baseline} (95 % CI) | wins/ties/losses | p |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["loss"] == baseline:
            delta = wtl = p = "–"
        else:
            delta = f"{r['delta']:+.4f} ± {r['ci95']:.4f}"
            wtl = f"{r['wins']}/{r['ties']}/{r['losses']}"
            p = f"{r['p_wilcoxon']:.3g}"
        lines.append(f"| {r['loss']} | {r['mean']:.4f} ± {r['sd']:.4f} | {delta} | {wtl} | {p} |")
    return "\n".join(lines)


def _row_table(row: BenchmarkRow) -> str:
    """The markdown table of one (architecture, k) row of :func:`small_data_benchmark`."""
    lines = [
        f"| loss | tuned setting | tuning acc | search cost | test acc (mean ± sd) | "
        f"Δ vs {row.baseline}, pt (95 % CI) | wins/ties/losses | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in row.losses.items():
        r = entry.summary
        setting = describe_setting(entry)
        if entry.at_grid_edge:
            setting += f" (edge: {', '.join(entry.at_grid_edge)})"
        if name == row.baseline:
            delta = wtl = p = "–"
        else:
            delta = f"{100 * r.delta:+.2f} ± {100 * r.ci95:.2f}"
            wtl = f"{r.wins}/{r.ties}/{r.losses}"
            p = f"{r.p_wilcoxon:.2g}"
        lines.append(
            f"| {name} | {setting} | {entry.tuning_score:.4f} | {_cost(entry)} | "
            f"{r.mean:.4f} ± {r.sd:.4f} | {delta} | {wtl} | {p} |"
        )
    return "\n".join(lines)


def summary_table(result: BenchmarkResult) -> str:
    """One row per (architecture, k): the tuned best classical loss and every other loss's Δ."""
    learned = list(result.settings.losses)
    head = "".join(f" {name}: Δ pt (p) |" for name in learned)
    lines = [
        f"| architecture | k | best tuned classical loss (test acc) |{head}",
        "|---|---|---|" + "---|" * len(learned),
    ]
    for row in result.rows:
        base = row.baseline_result
        cells = ""
        for name in learned:
            r = row.losses[name].summary
            cells += f" {100 * r.delta:+.2f} ± {100 * r.ci95:.2f} ({r.p_wilcoxon:.2g}) |"
        lines.append(
            f"| {row.architecture} | {row.k} | {row.baseline}: {describe_setting(base)} "
            f"({base.summary.mean:.4f}) |{cells}"
        )
    return "\n".join(lines)


def benchmark_markdown(result: BenchmarkResult) -> str:
    """The report of :func:`small_data_benchmark`: provenance, summary, one table per row."""
    s = result.settings
    grids = "; ".join(
        f"{name} over " + (", ".join(f"{k} ∈ {list(v)}" for k, v in grid.items()) or "nothing")
        for name, grid in s.baselines.items()
    )
    lines = [
        "# Small-data benchmark",
        "",
        *provenance_lines(result.provenance),
        "",
        f"{s.n_tasks} paired test tasks per k from the test split ({s.n_test} images; "
        f"accuracy on the rest of it). Tuned per (loss, architecture, k) on "
        f"{s.n_tuning_tasks} tasks from the training pool ({s.n_pool} images; every "
        f"setting screened on {s.n_screening_tasks} of them, each loss's "
        f"{s.n_finalists} best (hyperparameters, lr) on all), then frozen: lr from "
        f"{s.grid_lr} (extended up to {s.max_lr_extensions} times while "
        f"the pick is on an edge) × steps ∈ {s.grid_steps}, and each classical loss over "
        f"its own hyperparameters ({grids}). Learned losses get the same lr and steps grid. "
        f"Baseline: {s.baseline_rule}. Search cost: the loss's share of the tuning wall "
        "time, plus its evolution time where recorded. Δ in accuracy points.",
        "",
        "## Summary",
        "",
        summary_table(result),
        "",
    ]
    for row in result.rows:
        lines += [
            f"## {row.architecture}, k = {row.k} ({s.architectures[row.architecture]})",
            "",
            _row_table(row),
            "",
        ]
    return "\n".join(lines) + "\n"


def write_benchmark_report(result: BenchmarkResult, output) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``accuracy_vs_k.png`` into ``output``.

    Each file is written atomically; nothing else is touched. The figure needs matplotlib
    and is skipped without it. ``results.json`` is ``result.to_dict()``; read it back with
    :meth:`BenchmarkResult.load`.
    """
    output = Path(output)
    paths = {"json": output / "results.json", "markdown": output / "results.md"}
    atomic_write_bytes(paths["json"], (json.dumps(result.to_dict(), indent=1) + "\n").encode())
    atomic_write_bytes(paths["markdown"], benchmark_markdown(result).encode())
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return paths
    from ..plotting import plot_benchmark

    buffer = io.BytesIO()
    plot_benchmark(result).savefig(buffer, format="png", dpi=110)
    paths["plot"] = output / "accuracy_vs_k.png"
    atomic_write_bytes(paths["plot"], buffer.getvalue())
    return paths
