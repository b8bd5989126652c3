"""What does each part of a learned loss contribute? Paired Δ per (architecture, k).

Reads benchmark results (``results.json`` files of ``benchmarks/small_data_v2.py``),
in which every learned loss ``NAME`` is run beside ``NAME-linear`` (its network zeroed)
and ``NAME-network`` (its linear term at its start), each tuned over lr and steps the same
way, on the same test tasks and initial weights. Writes ``ablation.md``: full − linear part
(what the network adds), full − network part (what the linear term adds), and the full loss
against the row's tuned best classical loss.

    python benchmarks/tools/ablation_table.py benchmarks/results/ablation.md \\
        benchmarks/results/small_data_v2_cnn/results.json \\
        benchmarks/results/small_data_v2_mlp_mlp2/results.json

A source ``PATH:NAME,NAME`` reads only those learned losses from ``PATH``. With
``--vs V2_RESULTS ...`` the *vs classical* column pairs each row with the tuned best
classical loss of the benchmark v2 row of the same (architecture, k) -- for runs such as
``benchmarks/experiments/learned_losses_v2.py`` that tune only a few classical losses to check
that their tasks are v2's (which ``compare_learned_rows.py`` verifies).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sklearn_mln.benchmark import BenchmarkResult, BenchmarkRow, summarize
from sklearn_mln.toolkit import atomic_write_bytes, provenance, provenance_lines

PARTS = ("linear", "network")


def _delta(a: list[float], b: list[float]) -> str:
    row = summarize({"a": np.asarray(a), "b": np.asarray(b)}, "b")[0]
    return f"{100 * row['delta']:+.2f} ± {100 * row['ci95']:.2f} (p {row['p_wilcoxon']:.2g})"


def _baseline_accuracy(row: BenchmarkRow, versus: dict) -> list[float]:
    reference = versus.get((row.architecture, row.k), row)
    return reference.baseline_result.test_accuracy


def ablation_markdown(
    results: list[BenchmarkResult],
    sources: list[str],
    only: list[set[str] | None] | None = None,
    versus: dict | None = None,
    versus_sources: tuple[str, ...] | list[str] = (),
) -> str:
    """``versus``: v2 rows (:class:`BenchmarkRow`) by (architecture, k), read from
    ``versus_sources``."""
    lines = [
        "# Ablation of the learned losses",
        "",
        *provenance_lines(provenance()),
        f"- from: {', '.join(f'`{s}`' for s in sources)}",
        *(
            [f"- vs classical: the tuned best classical loss of the v2 rows of {listed}"]
            if (listed := ", ".join(f"`{p}`" for p in versus_sources))
            else []
        ),
        "",
        "Paired differences in accuracy points (95 % CI, Wilcoxon p) on each row's test tasks; "
        "every variant tuned over lr and steps the same way. *network adds*: full − linear "
        "part (the network zeroed); *linear term adds*: full − network part (the linear "
        "term at its start value; – where a run left it out); *vs classical*: full − the "
        "row's tuned best classical loss.",
        "",
        "| loss | architecture | k | network adds | linear term adds | vs classical |",
        "|---|---|---|---|---|---|",
    ]
    only = only or [None] * len(results)
    for result, wanted in zip(results, only):
        names = result.settings.losses
        for name in (n for n in names if f"{n}-linear" in names and (not wanted or n in wanted)):
            for row in sorted(result.rows, key=lambda r: (r.architecture, r.k)):
                losses = row.losses
                full = losses[name].test_accuracy
                cells = [
                    _delta(full, losses[f"{name}-{part}"].test_accuracy)
                    if f"{name}-{part}" in losses
                    else "–"
                    for part in PARTS
                ]
                vs_classical = _delta(full, _baseline_accuracy(row, versus or {}))
                lines.append(
                    f"| {name} | {row.architecture} | {row.k} | {cells[0]} | "
                    f"{cells[1]} | {vs_classical} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    arguments = sys.argv[2:]
    vs = arguments[arguments.index("--vs") + 1 :] if "--vs" in arguments else []
    sources = arguments[: arguments.index("--vs")] if vs else arguments
    target = Path(sys.argv[1])
    paths = [s.split(":")[0] for s in sources]
    only = [set(s.split(":")[1].split(",")) if ":" in s else None for s in sources]
    results = [BenchmarkResult.load(p) for p in paths]
    versus = {}
    for path in vs:
        for row in BenchmarkResult.load(path).rows:
            versus[(row.architecture, row.k)] = row
    markdown = ablation_markdown(results, sources, only, versus, vs)
    atomic_write_bytes(target, markdown.encode())
    print(f"Wrote {target}.")
