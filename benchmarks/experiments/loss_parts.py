"""Split an evolved anchored loss into its linear part and its network part.

An anchored, log-prob MLN is ``relu(CE + sum_c (a0 + a1 y_c) log p_c + f(...))``:

* **linear part**: the network ``f`` zeroed. What is left is cross-entropy plus a linear
  term in the log-probs, a *rescaled* label smoothing (targets ``t_c ∝ -a0 + (1 - a1) y_c``,
  loss scale ``-C a0 + 1 - a1``);
* **network part**: the linear term put back to where evolution started it (label
  smoothing 0.1 for ``init="label_smoothing"``, zero for cross-entropy), the network kept.

Benchmarked beside the full loss (``benchmarks/small_data_v2.py``), the difference full − linear
part is what the learned network adds beyond smoothing-plus-scale.

    python benchmarks/experiments/loss_parts.py sklearn_mln/pretrained/fashion-mnist.mln \\
        benchmarks/results/ablations/fashion-mnist
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sklearn_mln import MetaLossNetwork, load_meta_loss
from sklearn_mln.toolkit import provenance


def _start_linear(net: MetaLossNetwork) -> np.ndarray:
    init = net.metadata.get("params", {}).get("init", "cross_entropy")
    if init == "label_smoothing":
        n_classes = net.spec.n_classes
        return MetaLossNetwork.from_label_smoothing(n_classes, 0.1).get_flat_params()[:2]
    if init == "cross_entropy":
        return np.zeros(2)
    raise SystemExit(f"Cannot tell where the linear term of init={init!r} started.")


def loss_parts(source: str, prefix: str) -> dict[str, Path]:
    net = load_meta_loss(source)
    if net.spec.anchor != "cross_entropy" or net.spec.inputs != "log_probs":
        raise SystemExit("The ablation is defined for anchored log-prob MLNs.")
    theta = net.get_flat_params()
    a0, a1 = theta[:2]
    n_classes = net.spec.n_classes
    scale = -n_classes * a0 + 1 - a1
    target_true = (-a0 + 1 - a1) / scale
    start = _start_linear(net)
    record = provenance()
    parts = {
        "linear": (
            np.concatenate([theta[:2], np.zeros(len(theta) - 2)]),
            {
                "part": "linear (network zeroed)",
                "a0": float(a0),
                "a1": float(a1),
                "loss_scale_vs_cross_entropy": float(scale),
                "equivalent_smoothing": float((1 - target_true) * n_classes / (n_classes - 1)),
            },
        ),
        "network": (
            np.concatenate([start, theta[2:]]),
            {"part": "network (linear term at its start)", "a0": start[0], "a1": start[1]},
        ),
    }
    paths = {}
    for part, (params, info) in parts.items():
        ablated = MetaLossNetwork.from_spec(net.spec, params)
        ablated.metadata = {
            "ablation_of": source,
            **{k: float(v) if isinstance(v, np.floating) else v for k, v in info.items()},
            "provenance": record,
            "source_metadata": net.metadata,
        }
        paths[part] = Path(f"{prefix}-{part}.mln")
        paths[part].parent.mkdir(parents=True, exist_ok=True)
        ablated.save(paths[part])
    print(
        f"{source}: a0 {a0:+.4f}, a1 {a1:+.4f}: linear part = label smoothing eps "
        f"{parts['linear'][1]['equivalent_smoothing']:.3f} at {scale:.2f}x the scale of CE; "
        f"wrote {', '.join(map(str, paths.values()))}"
    )
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    loss_parts(sys.argv[1], sys.argv[2])
