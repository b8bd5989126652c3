"""Keep only the linear part of an evolved anchored MLN: is its gain "just smoothing"?

An anchored, log-prob MLN is ``relu(CE + sum_c (a0 + a1 y_c) log p_c + f(...))``. With the
network ``f`` zeroed, what is left is cross-entropy plus a linear term in the log-probs: a
*rescaled* label smoothing (targets ``t_c ∝ -a0 + (1 - a1) y_c``, loss scale
``-C a0 + 1 - a1``). Comparing the evolved loss with this ablation on the same tasks shows
how much of its gain the learned network ``f`` adds beyond smoothing-plus-scale.

    python benchmarks/ablations/linear_part.py sklearn_mln/pretrained/fashion-mnist.mln \\
        benchmarks/results/evolution/fashion-mnist-linear-part.mln
"""

from __future__ import annotations

import sys

import numpy as np

from sklearn_mln import load_meta_loss


def linear_part(source: str, target: str) -> None:
    net = load_meta_loss(source)
    if net.spec.anchor != "cross_entropy" or net.spec.inputs != "log_probs":
        raise SystemExit("The ablation is defined for anchored log-prob MLNs.")
    theta = net.get_flat_params()
    a0, a1 = theta[:2]
    net.set_flat_params(np.concatenate([theta[:2], np.zeros(len(theta) - 2)]))
    C = net.spec.n_classes
    scale = -C * a0 + 1 - a1
    target_true = (-a0 + 1 - a1) / scale
    net.metadata = {
        "ablation_of": source,
        "source_metadata": net.metadata,
        "a0": float(a0),
        "a1": float(a1),
        "loss_scale_vs_cross_entropy": float(scale),
        "equivalent_smoothing": float((1 - target_true) * C / (C - 1)),
    }
    net.save(target)
    print(
        f"a0 {a0:+.4f}, a1 {a1:+.4f}: label smoothing eps = "
        f"{net.metadata['equivalent_smoothing']:.3f} at {scale:.2f}x the scale of CE -> {target}"
    )


if __name__ == "__main__":
    linear_part(*sys.argv[1:3])
