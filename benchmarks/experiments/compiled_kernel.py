"""Does ``torch.compile`` fuse the population's per-class loss into something faster?

The inner loop's per-class meta-loss is a few dozen elementwise passes over
``(members, hidden units, samples x classes)``; one fused pass would read each element
once. This times the loss and its gradient with respect to the logits (forward and
backward, one torch thread) three ways on the evolution's shapes (10-shot, 10 classes,
per-class 2-16-1 on probabilities, random weights):

  library kernel      -- ``meta_loss_per_sample(..., fast=True)``: the gradient computed in
                         the forward pass (``FusedPerClassLoss``), what the inner loop runs
  plain autograd      -- ``meta_loss_per_sample(..., fast=False)``
  torch.compile       -- the plain-autograd loss compiled by inductor (``dynamic=False``),
                         timed after its compilation

    python benchmarks/experiments/compiled_kernel.py     # about 2 minutes
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sklearn_mln.toolkit import (
    MetaLossSpec,
    meta_loss_per_sample,
    provenance_lines,
    record_measurement,
)

RESULTS = Path(__file__).resolve().parents[1] / "results" / "compiled_kernel"
SPEC = MetaLossSpec(inputs="probs", hidden_sizes=(16,))
N_SAMPLES, N_CLASSES = 100, 10


def _timed(step, repeats: int, calls: int) -> float:
    """Median microseconds per call of ``step`` over ``repeats`` blocks of ``calls``."""
    for _ in range(10):
        step()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        blocks.append((time.perf_counter() - start) / calls * 1e6)
    return float(np.median(blocks))


def bench(members: int, repeats: int) -> dict:
    rng = np.random.RandomState(0)
    theta = torch.as_tensor(rng.normal(0, 0.3, (members, SPEC.n_params)), dtype=torch.float32)
    logits = torch.randn(members, N_SAMPLES, N_CLASSES, requires_grad=True)
    y = torch.as_tensor(rng.randint(0, N_CLASSES, (members, N_SAMPLES)))

    def loss_of(fast: bool):
        return lambda z: meta_loss_per_sample(theta, z, y, SPEC, fast=fast).mean(-1).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.compile(loss_of(False), dynamic=False)
        started = time.perf_counter()
        compiled(logits).backward()
        compile_seconds = time.perf_counter() - started
    ways = {"library kernel": loss_of(True), "plain autograd": loss_of(False)}
    ways["torch.compile"] = compiled
    gradients = {}
    for name, loss in ways.items():
        logits.grad = None
        loss(logits).backward()
        gradients[name] = logits.grad.clone()
    calls = max(20, 2000 // members)
    times = {
        name: _timed(lambda loss=loss: loss(logits).backward(), repeats, calls)
        for name, loss in ways.items()
    }
    reference = gradients["plain autograd"]
    return {
        "members": members,
        "compile_seconds": compile_seconds,
        "microseconds": times,
        "max_gradient_difference": {
            name: float((g - reference).abs().max()) for name, g in gradients.items()
        },
    }


def markdown(result: dict) -> str:
    lines = ["# torch.compile and the population's per-class loss", ""]
    lines += provenance_lines(result["provenance"]) + [""]
    lines.append(
        f"Loss and logit gradient (forward + backward), {N_SAMPLES} samples x {N_CLASSES} "
        "classes per member, per-class 2-16-1 on probabilities, one torch thread; median "
        "microseconds per call (compilation excluded)."
    )
    lines += ["", "| members | way | µs / call | × library kernel | max grad diff |"]
    lines.append("|---|---|---|---|---|")
    for row in result["rows"]:
        kernel = row["microseconds"]["library kernel"]
        for name, micro in row["microseconds"].items():
            diff = row["max_gradient_difference"][name]
            lines.append(
                f"| {row['members']} | {name} | {micro:.0f} | {micro / kernel:.2f}× | {diff:.1e} |"
            )
    compile_times = ", ".join(f"{r['compile_seconds']:.1f}" for r in result["rows"])
    lines += ["", f"Compilation took {compile_times} s."]
    return "\n".join(lines)


def main(argv=None) -> int:
    record_measurement(
        lambda: {"rows": [bench(members, repeats=5) for members in (1, 16, 64)]},
        markdown,
        RESULTS / "compiled_kernel",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
