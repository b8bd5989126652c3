"""Can the population CNN's convolutions run faster batched across members than one by one?

The population path runs the small CNN's convolutions member by member. Its training step
(forward and weight gradient of the two convolutions, 10-shot: 100 images of 28 x 28) is
timed here, one torch thread, for 8 members -- the 8 candidates of one task, which see the
same images -- three ways for each convolution:

  conv 1 (1 -> 8 channels, on the task's images; no input gradient)
    per member       -- 8 ``conv2d`` calls, what the library runs
    one convolution  -- the 8 candidates' filters as one 64-channel ``conv2d``
    unfolded once    -- the images unfolded (im2col) once, then one product for all filters
  conv 2 (8 -> 16 channels, on each member's own activations; input gradient too)
    per member       -- 8 ``conv2d`` calls, what the library runs
    grouped          -- one ``conv2d`` with ``groups=8``
    channels last    -- 8 ``conv2d`` calls in ``torch.channels_last`` memory format

    python benchmarks/experiments/cnn_batching.py     # under a minute
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sklearn_mln.toolkit import provenance_lines, record_measurement

RESULTS = Path(__file__).resolve().parents[1] / "results" / "cnn_batching"
MEMBERS, IMAGES = 8, 100


def _timed(step, repeats: int = 30) -> float:
    """Median milliseconds of ``step``."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _conv_padded(x, weight, bias, groups=1):
    return F.conv2d(x, weight, bias, padding=1, groups=groups)


def _trained(weight, bias, forward):
    """One forward and backward of ``forward(weight, bias)`` with an all-ones output gradient."""
    weight, bias = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    out = forward(weight, bias)
    out.backward(torch.ones_like(out))
    return weight.grad


def bench() -> dict:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(IMAGES, 1, 28, 28, generator=gen)
    w1 = torch.randn(MEMBERS, 8, 1, 3, 3, generator=gen)
    b1 = torch.randn(MEMBERS, 8, generator=gen)
    cols = F.unfold(images, 3, padding=1)  # (IMAGES, 9, 784): once per task

    def conv1_per_member():
        return [_trained(w1[m], b1[m], partial(_conv_padded, images)) for m in range(MEMBERS)]

    def conv1_one():
        return _trained(w1.reshape(-1, 1, 3, 3), b1.reshape(-1), partial(_conv_padded, images))

    def conv1_unfolded():
        return _trained(
            w1.reshape(-1, 9), b1.reshape(-1), lambda w, b: torch.matmul(w, cols) + b[:, None]
        )

    h = torch.randn(MEMBERS, IMAGES, 8, 14, 14, generator=gen)
    w2 = torch.randn(MEMBERS, 16, 8, 3, 3, generator=gen)
    b2 = torch.randn(MEMBERS, 16, generator=gen)
    h_grouped = h.transpose(0, 1).reshape(IMAGES, MEMBERS * 8, 14, 14)
    h_last = [x.contiguous(memory_format=torch.channels_last) for x in h]

    def conv2(inputs):
        def run():
            grads = []
            for m in range(MEMBERS):
                x = inputs[m].clone().requires_grad_()
                grads.append(_trained(w2[m], b2[m], partial(_conv_padded, x)))
            return grads

        return run

    def conv2_grouped():
        x = h_grouped.clone().requires_grad_()
        grouped = partial(_conv_padded, x, groups=MEMBERS)
        return _trained(w2.reshape(-1, 8, 3, 3), b2.reshape(-1), grouped)

    rows = {
        "conv 1": {
            "per member": conv1_per_member,
            "one convolution": conv1_one,
            "unfolded once": conv1_unfolded,
        },
        "conv 2": {
            "per member": conv2(h),
            "grouped": conv2_grouped,
            "channels last": conv2(h_last),
        },
    }
    # the same weight gradients every way (a check that each way computes the same thing)
    same = {
        "conv 1": torch.allclose(
            torch.stack(conv1_per_member()).reshape(-1, 9),
            conv1_unfolded().reshape(-1, 9),
            rtol=1e-4,
            atol=1e-2,
        ),
        "conv 2": torch.allclose(
            torch.stack(conv2(h)()).reshape(-1), conv2_grouped().reshape(-1), rtol=1e-4, atol=1e-2
        ),
    }
    return {
        "milliseconds": {
            conv: {way: _timed(step) for way, step in ways.items()} for conv, ways in rows.items()
        },
        "same_gradients": same,
    }


def markdown(result: dict) -> str:
    lines = ["# Batching the population CNN's convolutions across members", ""]
    lines += provenance_lines(result["provenance"]) + [""]
    lines.append(
        f"Forward and weight gradient for {MEMBERS} members on {IMAGES} images (conv 2 with its "
        "input gradient), one torch thread; median milliseconds of 30 runs."
    )
    lines += ["", "| convolution | way | ms | × per member |", "|---|---|---|---|"]
    for conv, ways in result["milliseconds"].items():
        base = ways["per member"]
        for way, ms in ways.items():
            lines.append(f"| {conv} | {way} | {ms:.1f} | {base / ms:.2f}× |")
    lines += ["", f"Same weight gradients every way: {result['same_gradients']}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    record_measurement(bench, markdown, RESULTS / "cnn_batching")
    return 0


if __name__ == "__main__":
    sys.exit(main())
