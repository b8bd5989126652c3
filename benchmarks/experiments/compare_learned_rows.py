"""Pair the rows of ``learned_losses_v2.py`` with the benchmark v2 rows, task for task.

For every (architecture, k) row of the new run: each learned loss against the v2 row's best
tuned classical loss (its ``baseline``, tuned over every classical loss and grid of v2),
with the paired difference, its 95 % CI and the Wilcoxon p-value
(:func:`sklearn_mln.benchmark.summarize`). That the tasks are the same is checked, not
assumed:
a classical setting picked in both runs must have the same accuracy on every test task.

    python benchmarks/experiments/compare_learned_rows.py \\
        benchmarks/results/learned_losses_v2_cnn benchmarks/results/small_data_v2_cnn
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from sklearn_mln.benchmark import BenchmarkResult, BenchmarkRow, summarize
from sklearn_mln.toolkit import provenance, provenance_lines


def _rows(folder: Path) -> dict[tuple[str, int], BenchmarkRow]:
    result = BenchmarkResult.load(folder / "results.json")
    return {(row.architecture, row.k): row for row in result.rows}


def _largest_task_gap(new: BenchmarkRow, old: BenchmarkRow) -> float | None:
    """The largest per-task accuracy difference of a classical setting picked in both rows.

    ``0.0`` is the same tasks to the bit; a few single-image differences (about 5e-4 on
    2000 validation images) are floating-point ties that flip when a population pass holds
    other losses; ``None``: no setting was picked in both.
    """
    largest = None
    for name, entry in new.losses.items():
        before = old.losses.get(name)
        if entry.kind != "classical" or before is None:
            continue
        if (entry.params, entry.lr, entry.steps) != (before.params, before.lr, before.steps):
            continue
        gap = float(np.abs(np.subtract(entry.test_accuracy, before.test_accuracy)).max())
        largest = gap if largest is None else max(largest, gap)
    return largest


def compare(new_folder: Path, old_folders: list[Path]) -> dict:
    started = time.perf_counter()
    old = {key: row for folder in old_folders for key, row in _rows(folder).items()}
    rows = []
    for key, row in sorted(_rows(new_folder).items()):
        if key not in old:
            continue
        reference = old[key]
        baseline, base = reference.baseline, reference.baseline_result
        accuracies = {f"v2 best: {baseline}": np.asarray(base.test_accuracy)}
        learned = [n for n, e in row.losses.items() if e.kind != "classical"]
        # this run's own classical picks too: where its tuning found a better setting than
        # v2's, the learned loss's gain over v2's pick is partly tuning noise
        shown = {name: name for name in learned}
        shown.update({f"this run's {n}": n for n, e in row.losses.items() if e.kind == "classical"})
        for label, name in shown.items():
            accuracies[label] = np.asarray(row.losses[name].test_accuracy)
        summary = summarize(accuracies, f"v2 best: {baseline}")
        rows.append(
            {
                "architecture": key[0],
                "k": key[1],
                "baseline": baseline,
                "baseline_setting": {"params": base.params, "lr": base.lr, "steps": base.steps},
                "largest_task_gap": _largest_task_gap(row, reference),
                "picks": {
                    label: {
                        "params": row.losses[n].params,
                        "lr": row.losses[n].lr,
                        "steps": row.losses[n].steps,
                    }
                    for label, n in shown.items()
                },
                "summary": summary,
            }
        )
    record = provenance(started=started)
    return {
        "rows": rows,
        "sources": [str(new_folder), *map(str, old_folders)],
        "provenance": record,
    }


def _same_tasks_text(gap: float | None) -> str:
    if gap is None:
        return "not checked (no classical setting picked in both runs)"
    return f"a setting picked in both scores within {gap:.2g} on every task"


def markdown(result: dict) -> str:
    lines = ["# Learned losses vs the best tuned classical loss of benchmark v2", ""]
    lines += provenance_lines(result["provenance"])
    lines += [
        "",
        "Paired over the same 100 test tasks: Δ = learned − v2's best tuned classical "
        "loss, in points, ± 95 % CI, (Wilcoxon p).",
        "",
    ]
    for row in result["rows"]:
        s = row["baseline_setting"]
        lines += [
            f"## {row['architecture']}, k = {row['k']}",
            "",
            f"v2 best: {row['baseline']} {s['params']} lr {s['lr']:.3g}, {s['steps']} steps;"
            f" same tasks: {_same_tasks_text(row['largest_task_gap'])}",
            "",
            "| loss | mean | Δ | wins/ties/losses | p | setting, lr, steps |",
            "|---|---:|---:|---|---:|---|",
        ]
        for r in row["summary"]:
            pick = row["picks"].get(r["loss"])
            setting = f"{pick['lr']:.3g}, {pick['steps']}" if pick else ""
            if pick and pick.get("params"):
                setting = f"{pick['params']}, {setting}"
            delta = f"{100 * r['delta']:+.2f} ± {100 * r['ci95']:.2f}"
            lines.append(
                f"| {r['loss']} | {r['mean']:.4f} | {delta} "
                f"| {r['wins']}/{r['ties']}/{r['losses']} | {r['p_wilcoxon']:.2g} | {setting} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    new_folder, *old_folders = map(Path, sys.argv[1:])
    result = compare(new_folder, old_folders)
    (new_folder / "compared_with_v2.json").write_text(json.dumps(result, indent=1) + "\n")
    (new_folder / "compared_with_v2.md").write_text(markdown(result))
    print(markdown(result))
