"""The evolution loop of MLNEvolver, drawn with matplotlib (for the plot directive)."""

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

fig, ax = plt.subplots(figsize=(9.0, 5.2))
ax.set_xlim(0, 100)
ax.set_ylim(0, 60)
ax.axis("off")

# name: (x, y, width, height, text, colour)
BOXES = {
    "cma": (4, 40, 27, 15, "CMA-ES\nmean $m$, step size $\\sigma$,\ncovariance $C$", "#dbe9f6"),
    "ask": (
        38, 40, 25, 15,
        "ask: $\\lambda$ = popsize\ncandidate losses\n$\\theta_1 \\dots \\theta_\\lambda$",
        "#eeeeee",
    ),
    "tasks": (
        70, 40, 27, 15,
        "sample n_tasks tasks:\nn_shots per class from\nthe task-source split",
        "#fde9d9",
    ),
    "train": (
        70, 14, 27, 17,
        "each candidate trains a\nfresh classifier on every\ntask (inner_steps of\n"
        "full-batch SGD, same init)",
        "#fde9d9",
    ),
    "fitness": (
        38, 14, 25, 17,
        "fitness $f_i$: mean\naccuracy on the held-out\nvalidation split\n(collapse / NaN: 0)",
        "#e2f0d9",
    ),
    "tell": (
        4, 14, 27, 17,
        "tell: CMA-ES moves\n$m$ towards the fitter\ncandidates, adapts\n$\\sigma$ and $C$",
        "#dbe9f6",
    ),
}  # fmt: skip
for x, y, w, h, text, color in BOXES.values():
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0.6,rounding_size=1.5", fc=color, ec="0.35", lw=1
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


def arrow(start, end, **kwargs):
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle="-|>", mutation_scale=14, color="0.25", lw=1.3, **kwargs
        )
    )


arrow((32, 47.5), (37, 47.5))
arrow((64, 47.5), (69, 47.5))
arrow((83.5, 39), (83.5, 32))
arrow((69, 22.5), (64, 22.5))
arrow((37, 22.5), (32, 22.5))
arrow((17.5, 32), (17.5, 39))
ax.text(17.5 + 1.2, 35.5, "next generation", fontsize=8, va="center", color="0.25")
ax.text(
    50,
    4,
    "after the last generation: a shortlist (start, final mean, recent and best-ever "
    "candidates)\nis re-evaluated on n_reeval_tasks fixed tasks; the winner is meta_loss_",
    ha="center",
    va="center",
    fontsize=8.5,
    style="italic",
)
fig.tight_layout()
