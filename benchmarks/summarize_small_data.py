"""One summary table over several small-data benchmark runs (``results.json`` files).

Each run compares its losses on shared, paired test tasks; this lists, per (architecture,
k), the evolved loss against the run's best tuned baseline (chosen by tuning score), against
tuned cross-entropy, and against any other loss named with ``--versus``:

    python benchmarks/summarize_small_data.py benchmarks/results/small_data_cnn_*/results.json \\
        --versus linear_part --output benchmarks/results/small_data_summary.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sklearn_mln._evaluation import summarize


def _cell(row: dict) -> str:
    return (
        f"{100 * row['delta']:+.2f} ± {100 * row['ci95']:.2f} "
        f"({row['wins']}/{row['ties']}/{row['losses']}, p = {row['p_wilcoxon']:.2g})"
    )


def summary(paths: list[Path], evolved: str, versus: list[str]) -> str:
    header = ["architecture", "k", "tasks", "evolved", "best baseline", "Δ vs best baseline"]
    header += ["Δ vs cross_entropy"] + [f"Δ vs {name}" for name in versus]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    entries = []
    for path in paths:
        for entry in json.loads(Path(path).read_text())["results"]:
            entries.append((entry["architecture"], entry["k"], entry))
    for arch, k, entry in sorted(entries, key=lambda e: (e[0] != "cnn", e[0], e[1])):
        losses = entry["losses"]
        if evolved not in losses:
            continue
        acc = {name: np.asarray(v["test_accuracy"]) for name, v in losses.items()}
        base = entry["baseline"]
        cells = [arch, str(k), str(len(acc[evolved]))]
        cells.append(f"{acc[evolved].mean():.4f}")
        cells.append(f"{base} {acc[base].mean():.4f}")
        for reference in [base, "cross_entropy", *versus]:
            if reference not in acc:
                cells.append("–")
                continue
            rows = {r["loss"]: r for r in summarize(acc, reference)}
            cells.append(_cell(rows[evolved]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files")
    parser.add_argument("--evolved", default="evolved", help="name of the evolved loss")
    parser.add_argument("--versus", nargs="*", default=[], help="more losses to compare with")
    parser.add_argument("--output", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    text = (
        "Δ in accuracy points, 95 % CI, wins/ties/losses of the evolved loss over the "
        "paired test tasks, two-sided Wilcoxon p.\n\n"
        + summary(args.results, args.evolved, args.versus)
    )
    print(text)
    if args.output is not None:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
