"""Ablate a loss's shots input: the same loss, always told one k.

A ``shots_input`` loss sees the examples per class of its training set. To measure what
that input is worth, this writes the loss it would be if it were always told ``--shots``
(default 10, the value it sees where nobody tells it): the shots column of its first layer
is folded into that layer's bias, and the input removed. At ``--shots`` the two losses
give the same values (tested); at any other k the ablated one behaves as at ``--shots``.
Benchmark rows of both, on the same tasks, then give the shots input's share.

    python benchmarks/experiments/fix_shots.py benchmarks/results/mixture/fmnist-told.mln \\
        benchmarks/results/mixture/fmnist-told-k10.mln
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from sklearn_mln import MetaLossNetwork, load_meta_loss
from sklearn_mln.toolkit import provenance, shots_feature


def fixed_shots(loss: MetaLossNetwork, shots: float) -> MetaLossNetwork:
    """``loss`` with its shots input replaced by the constant it has at ``shots``."""
    spec = loss.spec
    if not spec.shots_input:
        raise ValueError("the loss has no shots input to fix")
    shapes = spec.layer_shapes()
    (out_f, in_f) = shapes[0]
    theta = loss.get_flat_params()
    # theta: the linear term (a0, a1), then each layer's weight and bias
    linear = spec.n_params - sum(o * i + o for o, i in shapes)
    first = theta[linear : linear + out_f * in_f].reshape(out_f, in_f)
    bias = theta[linear + out_f * in_f : linear + out_f * in_f + out_f]
    folded_bias = bias + first[:, -1] * shots_feature(shots)  # the shots column is last
    rest = theta[linear + out_f * in_f + out_f :]
    new_theta = np.concatenate([theta[:linear], first[:, :-1].ravel(), folded_bias, rest])
    ablated = MetaLossNetwork.from_spec(dataclasses.replace(spec, shots_input=False), new_theta)
    ablated.progress = loss.progress
    return ablated


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a .mln file of a shots-input loss")
    parser.add_argument("output", help="the ablated loss's .mln file")
    parser.add_argument("--shots", type=float, default=10.0, help="the k it is always told")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    source = load_meta_loss(args.source)
    ablated = fixed_shots(source, args.shots)
    ablated.metadata = {
        "derived_from": args.source,
        "fixed_shots": args.shots,
        "source_metadata": {k: v for k, v in source.metadata.items() if k != "history"},
        **provenance(started=started),
    }
    ablated.save(args.output)
    print(f"Saved {args.output}: {args.source} always told k = {args.shots:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
