"""What does each part of a learned loss contribute? Paired Δ per (architecture, k).

Reads benchmark results (``results.json`` files of ``benchmarks/runs/small_data_v2.py``),
in which every learned loss ``NAME`` is run beside ``NAME-linear`` (its network zeroed)
and ``NAME-network`` (its linear term at its start), each tuned over lr and steps the same
way, on the same test tasks and initial weights. Writes ``ablation.md``: full − linear part
(what the network adds), full − network part (what the linear term adds), and the full loss
against the row's tuned best classical loss.

    python benchmarks/ablations/ablation_table.py benchmarks/results/ablation.md \\
        benchmarks/results/small_data_v2_cnn/results.json \\
        benchmarks/results/small_data_v2_mlp_mlp2/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from sklearn_mln._archive import atomic_write_bytes
from sklearn_mln._provenance import provenance, provenance_lines
from sklearn_mln.benchmark import summarize

PARTS = ("linear", "network")


def _delta(a: list[float], b: list[float]) -> str:
    row = summarize({"a": np.asarray(a), "b": np.asarray(b)}, "b")[0]
    return f"{100 * row['delta']:+.2f} ± {100 * row['ci95']:.2f} (p {row['p_wilcoxon']:.2g})"


def ablation_markdown(results: list[dict], sources: list[str]) -> str:
    lines = [
        "# Ablation of the learned losses",
        "",
        *provenance_lines(provenance()),
        f"- from: {', '.join(f'`{s}`' for s in sources)}",
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
    for result in results:
        names = result["settings"]["losses"]
        for name in (n for n in names if f"{n}-linear" in names):
            for entry in sorted(result["results"], key=lambda e: (e["architecture"], e["k"])):
                losses = entry["losses"]
                full = losses[name]["test_accuracy"]
                cells = [
                    _delta(full, losses[f"{name}-{part}"]["test_accuracy"])
                    if f"{name}-{part}" in losses
                    else "–"
                    for part in PARTS
                ]
                versus = _delta(full, losses[entry["baseline"]]["test_accuracy"])
                lines.append(
                    f"| {name} | {entry['architecture']} | {entry['k']} | {cells[0]} | "
                    f"{cells[1]} | {versus} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    target, sources = Path(sys.argv[1]), sys.argv[2:]
    results = [json.loads(Path(s).read_text()) for s in sources]
    atomic_write_bytes(target, ablation_markdown(results, sources).encode())
    print(f"Wrote {target}.")
