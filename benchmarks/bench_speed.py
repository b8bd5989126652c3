"""Is evolution faster than the loop a user would write, at equal resources? (issue 28)

One process and one torch thread on every side. Per problem, the same work (popsize x
n_tasks classifiers trained from scratch for ``inner_steps`` full-batch SGD steps on the
same 10-shot tasks, then scored on the same validation images), timed as

  loop, cross-entropy      -- ``nn.Module`` + ``torch.optim.SGD``, one classifier at a time,
                              ``F.cross_entropy``: the floor
  loop, hand-written MLN   -- the same loop with a per-class meta-loss written in plain
                              PyTorch: ``nn.Sequential(Linear(2, 16), Tanh, Linear(16, 1),
                              Softplus)`` on ``[p_c, y_c]``, summed over classes (weights
                              frozen)
  loop, MetaLossNetwork    -- the same loop with the library's loss as a plain criterion,
                              as constructed (its weights trainable, not optimised); and,
                              where numba is installed, frozen and through the compiled
                              kernel: the fastest loop a user could write with the loss
  MLNEvolver.fit           -- ``MLNEvolver(n_jobs=1).fit``'s marginal generation:
                              (fit of 4 generations - fit of 1) / 3; also with
                              ``set_config(native_kernels=True)`` where numba is installed

with a FLOP estimate beside each row (matrix products and convolutions, counted by
``torch.utils.flop_counter.FlopCounterMode`` on one classifier's step and scoring; the
elementwise work is not counted). A second table times one classifier's training alone
(100 samples, 100 steps) with each criterion: what a user pays for dropping the loss into
their own loop, including the compiled kernel (``set_config(native_kernels=True)``, where
numba is installed). Times are medians of interleaved repeats.

    python benchmarks/bench_speed.py --problems mlp-digits             # ~2 min
    python benchmarks/bench_speed.py --problems cnn-fashion-mnist --repeats 2   # ~6 min
    python benchmarks/bench_speed.py --quick                           # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sklearn_mln import (
    MLP,
    MetaLossNetwork,
    MLNEvolver,
    config_context,
    load_pretrained,
)
from sklearn_mln.datasets import load_digits_images, load_fashion_mnist
from sklearn_mln.toolkit import (
    class_indices,
    draw_seeds,
    make_task_batch,
    meta_loss_per_sample,
    provenance_lines,
    record_measurement,
    resolve_module_factory,
    sample_tasks,
)

RESULTS = Path(__file__).parent / "results" / "evolution_speed"
SEED = 0
LOSS = dict(inputs="probs", hidden_sizes=(16,))  # per-class 2-16-1 on probabilities


class HandWrittenMLN(nn.Module):
    """A per-class meta-loss as a user would write it (weights frozen)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1), nn.Softplus())
        self.requires_grad_(False)

    def forward(self, logits, y):
        probs = logits.softmax(-1)
        onehot = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
        return self.net(torch.stack([probs, onehot], -1)).sum((-2, -1)).mean()


def problem(name: str, quick: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """(X, y, MLNEvolver parameters) of a benchmark problem."""
    if name == "mlp-digits":
        X, y = load_digits_images(return_X_y=True)
        X = X.reshape(len(X), -1)
        params = dict(module=MLP(64, 10, (32,)), inner_lr=0.5, inner_momentum=0.0)
        size = dict(popsize=16, n_tasks=4)
    else:
        X, y = load_fashion_mnist("train", return_X_y=True)
        rows = np.random.RandomState(SEED).permutation(len(y))[: 1000 if quick else 4000]
        X, y = X[rows], y[rows]  # validation_size 0.5: 2000 validation images
        params = dict(inner_lr=0.03, inner_momentum=0.9)
        size = dict(popsize=8, n_tasks=2)
    if quick:
        size = dict(popsize=4, n_tasks=2)
    params.update(LOSS, **size, n_shots=10, inner_steps=20 if quick else 100, n_reeval_tasks=1)
    return X, y, params


def same_work(X, y, params):
    """The tasks, validation rows and candidate losses of one generation's work."""
    rng = np.random.RandomState(SEED)
    order = rng.permutation(len(y))
    val, source = order[: len(y) // 2], order[len(y) // 2 :]
    tasks = sample_tasks(class_indices(y[source], 10), params["n_tasks"], 10, None, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, len(tasks)), X[source], y[source], y[val])
    net = MetaLossNetwork(**LOSS, random_state=SEED)
    thetas = net.get_flat_params() + 0.02 * rng.standard_normal((params["popsize"], net.n_params))
    factory = resolve_module_factory(params.get("module"), X.shape[1:], 10)
    return batch, X[val], thetas, factory


def train_and_score(module, criterion, X, y, X_val, y_val, params) -> float:
    """One classifier, the plain way: ``optim.SGD`` steps, then validation accuracy."""
    optimizer = torch.optim.SGD(
        module.parameters(), lr=params["inner_lr"], momentum=params["inner_momentum"]
    )
    for _ in range(params["inner_steps"]):
        optimizer.zero_grad()
        criterion(module(X), y).backward()
        optimizer.step()
    with torch.no_grad():
        pred = module(X_val).argmax(1)
    keep = y_val >= 0
    return float((pred[keep] == y_val[keep]).float().mean())


#: the loop a user with numba would write: frozen losses through the compiled kernel
NATIVE_LOOP = "loop, MetaLossNetwork frozen, native_kernels=True"


def make_criteria(thetas) -> dict[str, list]:
    """One criterion per candidate, for each loop."""

    def losses():
        return [MetaLossNetwork(**LOSS, random_state=SEED).set_flat_params(t) for t in thetas]

    criteria = {
        "loop, cross-entropy": [F.cross_entropy] * len(thetas),
        "loop, hand-written MLN": [HandWrittenMLN(SEED + i) for i in range(len(thetas))],
        "loop, MetaLossNetwork": losses(),
    }
    if find_spec("numba") is not None:
        criteria[NATIVE_LOOP] = [loss.requires_grad_(False) for loss in losses()]
    return criteria


def plain_loop(criteria, batch, X_val, factory, params) -> list[float]:
    """Every (candidate, task) pair, one classifier at a time."""
    X_val = torch.as_tensor(X_val, dtype=torch.float32)
    scores = []
    for criterion in criteria:
        for t in range(batch.n_tasks):
            with torch.random.fork_rng():
                torch.manual_seed(int(batch.init_seeds[t]))
                module = factory()
            X = torch.as_tensor(batch.X_train[t], dtype=torch.float32)
            y = torch.as_tensor(batch.y_train[t], dtype=torch.int64)
            y_val = torch.as_tensor(batch.y_val[t], dtype=torch.int64)
            scores.append(train_and_score(module, criterion, X, y, X_val, y_val, params))
    return scores


def flops_per_evaluation(criterion, batch, X_val, factory, params) -> float:
    """Matrix-product and convolution FLOPs of one classifier's training and scoring."""
    module = factory()
    X = torch.as_tensor(batch.X_train[0], dtype=torch.float32)
    y = torch.as_tensor(batch.y_train[0], dtype=torch.int64)
    with FlopCounterMode(display=False) as counter:
        criterion(module(X), y).backward()
    step = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.as_tensor(X_val, dtype=torch.float32))
    return float(step * params["inner_steps"] + counter.get_total_flops())


def fit(X, y, params, n_generations: int, native: bool = False):
    evolver = MLNEvolver(**params, n_generations=n_generations, n_jobs=1, random_state=SEED)
    with config_context(native_kernels=native):
        return evolver.fit(X, y)


def bench_problem(name: str, repeats: int, quick: bool) -> dict:
    X, y, params = problem(name, quick)
    batch, X_val, thetas, factory = same_work(X, y, params)
    n_evals = len(thetas) * batch.n_tasks
    criteria = make_criteria(thetas)
    native = find_spec("numba") is not None  # the compiled kernel's row, where numba is
    fit(X, y, params, 1)  # warm-up: imports, first allocations
    if native:
        fit(X, y, params, 1, native=True)  # and compilation
    for key, crits in criteria.items():
        with config_context(native_kernels=key == NATIVE_LOOP):  # and compilation
            plain_loop(crits[:1], batch, X_val, factory, params)
    times: dict[str, list[float]] = {}

    def record(key, fn):
        start = time.perf_counter()
        out = fn()
        times.setdefault(key, []).append(time.perf_counter() - start)
        print(f"  {name} {key}: {times[key][-1]:.2f} s", flush=True)
        return out

    accuracy = {}
    for _ in range(repeats):
        for key, crits in criteria.items():
            with config_context(native_kernels=key == NATIVE_LOOP):
                accuracy[key] = record(
                    key, lambda c=crits: plain_loop(c, batch, X_val, factory, params)
                )
        record("fit 1", lambda: fit(X, y, params, 1))
        record("fit 4", lambda: fit(X, y, params, 4))
        if native:
            record("fit 1, native", lambda: fit(X, y, params, 1, native=True))
            record("fit 4, native", lambda: fit(X, y, params, 4, native=True))

    def median(key):
        return float(np.median(times[key]))

    seconds = {key: median(key) for key in criteria}
    seconds["MLNEvolver.fit, n_jobs=1"] = (median("fit 4") - median("fit 1")) / 3
    if native:
        key = "MLNEvolver.fit, n_jobs=1, native_kernels=True"
        seconds[key] = (median("fit 4, native") - median("fit 1, native")) / 3
    flops = {
        key: flops_per_evaluation(c[0], batch, X_val, factory, params)
        for key, c in criteria.items()
    }
    for key in seconds:
        if key.startswith("MLNEvolver.fit"):
            flops[key] = flops["loop, MetaLossNetwork"]
    hand = seconds["loop, hand-written MLN"]
    # the fairest reference: the fastest loop a user could write with a meta-loss
    loops = [s for key, s in seconds.items() if key.startswith("loop, ") and "cross" not in key]
    fastest = min(loops)
    rows = {
        key: {
            "seconds_per_generation": s,
            "ms_per_eval": 1000 * s / n_evals,
            "gflop_per_generation": flops[key] * n_evals / 1e9,
            "gflop_per_second": flops[key] * n_evals / 1e9 / max(s, 1e-9),
            "x_hand_written_loop": hand / max(s, 1e-9),
            "x_fastest_meta_loss_loop": fastest / max(s, 1e-9),
            "x_cross_entropy_loop": seconds["loop, cross-entropy"] / max(s, 1e-9),
        }
        for key, s in seconds.items()
    }
    settings = {k: v for k, v in params.items() if k != "module"}
    settings["module"] = repr(params["module"]) if "module" in params else "default"
    settings["hidden_sizes"] = list(settings["hidden_sizes"])
    return {
        "problem": name,
        "settings": settings,
        "repeats": repeats,
        "evaluations_per_generation": n_evals,
        "validation_images": len(X_val),
        "rows": rows,
        "loop_mean_accuracy": {k: float(np.mean(v)) for k, v in accuracy.items()},
        "raw_seconds": times,
    }


def bench_criterion(repeats: int, quick: bool) -> dict:
    """One classifier (the digits MLP), 100 samples, 100 full-batch SGD steps, per criterion."""
    X, y = load_digits_images(return_X_y=True)
    X = torch.as_tensor(X[:100].reshape(100, -1), dtype=torch.float32)
    y = torch.as_tensor(y[:100], dtype=torch.int64)
    frozen = MetaLossNetwork(**LOSS, random_state=SEED).requires_grad_(False)
    criteria = {
        "cross-entropy": F.cross_entropy,
        "hand-written MLN": HandWrittenMLN(SEED),
        "MetaLossNetwork()": MetaLossNetwork(random_state=SEED),
        "MetaLossNetwork(inputs='probs', hidden_sizes=(16,))": MetaLossNetwork(
            **LOSS, random_state=SEED
        ),
        "the same, weights frozen": frozen,
        'load_pretrained("fashion-mnist") (weights frozen)': load_pretrained("fashion-mnist"),
        'load_pretrained("fashion-mnist").requires_grad_()': load_pretrained(
            "fashion-mnist"
        ).requires_grad_(),
    }
    native = {}  # the compiled kernel (set_config(native_kernels=True)), where numba is
    if find_spec("numba") is not None:
        native = {
            'load_pretrained("fashion-mnist"), native_kernels=True': load_pretrained(
                "fashion-mnist"
            ),
            "MetaLossNetwork(inputs='probs', hidden_sizes=(16,)) frozen, native_kernels=True": (
                frozen
            ),
        }
        criteria.update(native)
    if not quick:  # what eager PyTorch and a compiler make of the same loss
        shipped = load_pretrained("fashion-mnist")
        lean, scripted = _lean_shipped_loss(shipped)
        criteria["the shipped loss in the fewest eager ops (floor)"] = lean
        criteria["the same, TorchScript"] = scripted
        criteria["the shipped loss, torch.compile"] = _compiled(shipped)
    params = dict(inner_lr=0.5, inner_momentum=0.0, inner_steps=20 if quick else 100)
    factory = resolve_module_factory(MLP(64, 10, (32,)), (64,), 10)
    n_loops = 3 if quick else 20
    times: dict[str, list[float]] = {k: [] for k in criteria}
    for _ in range(repeats * n_loops):
        for key, criterion in criteria.items():
            with torch.random.fork_rng():
                torch.manual_seed(SEED)
                module = factory()
            with config_context(native_kernels=key in native):
                start = time.perf_counter()
                train_and_score(module, criterion, X, y, X[:1], y[:1], params)
                times[key].append(time.perf_counter() - start)
    ce = float(np.median(times["cross-entropy"]))
    return {
        "settings": {"samples": 100, "module": "MLP(64, 10, (32,))", **params},
        "repeats": repeats * n_loops,
        "rows": {
            k: {
                "ms_per_100_steps": 1000 * float(np.median(v)) * 100 / params["inner_steps"],
                "x_cross_entropy": float(np.median(v)) / ce,
            }
            for k, v in times.items()
        },
    }


def _lean_shipped_loss(loss: MetaLossNetwork):
    """The shipped loss's value and logit gradient in the fewest eager ops we found (its
    architecture only: per-class, anchored, log-probabilities, one tanh layer)."""
    spec = loss.spec
    assert (spec.hidden_sizes, spec.activation, spec.inputs) == ((8,), "tanh", "log_probs")
    assert spec.anchor == "cross_entropy" and spec.layer_shapes() == [(8, 2), (1, 8)]
    theta = torch.as_tensor(loss.get_flat_params(), dtype=torch.float32)
    a0, a1 = theta[0].reshape(1, 1), theta[1].reshape(1, 1)
    w1 = theta[2:18].reshape(8, 2)
    wq, wy, b1 = w1[:, :1].contiguous(), w1[:, 1:].contiguous(), theta[18:26].reshape(8, 1)
    w2, b2 = theta[26:34].reshape(1, 8), theta[34:35].reshape(1, 1)

    def value_and_gradient(z, y, wq, wy, b1, w2, b2, a0, a1):
        n, n_classes = z.shape
        lp = torch.log_softmax(z, -1)
        p = lp.exp()
        onehot = torch.zeros_like(z).scatter_(-1, y.unsqueeze(-1), 1.0)
        q, label = lp.view(1, -1), onehot.view(1, -1)
        a = torch.tanh(torch.addcmul(b1, q, wq).addcmul_(label, wy))
        coef = torch.addcmul(a0, label, a1)
        out = torch.addmm(b2, w2, a).addcmul_(q, coef)
        slope = torch.mm(w2, (1.0 - a * a).mul_(wq)).add_(coef)
        g = out.view(n, n_classes).sum(-1).sub_(lp.gather(-1, y.unsqueeze(-1)).view(n))
        d_g = g.gt(0.0).to(z.dtype).div_(n).unsqueeze(-1)
        d_lp = slope.view(n, n_classes).mul_(d_g).addcmul_(onehot, d_g, value=-1.0)
        return g.clamp_min(0.0).mean(), d_lp.addcmul_(p, d_lp.sum(-1, keepdim=True), value=-1.0)

    weights = (wq, wy, b1, w2, b2, a0, a1)

    def criterion_of(kernel):
        class Lean(torch.autograd.Function):
            @staticmethod
            def forward(ctx, z, y):
                value, ctx.gradient = kernel(z.detach(), y, *weights)
                return value

            @staticmethod
            def backward(ctx, grad):
                return ctx.gradient * grad, None

        return Lean.apply

    with warnings.catch_warnings():  # TorchScript is deprecated; measured for the record
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(value_and_gradient)
    return criterion_of(value_and_gradient), criterion_of(scripted)


def _compiled(loss: MetaLossNetwork):
    """The loss through plain autograd, compiled by ``torch.compile`` (inductor)."""
    theta = loss.theta.detach().float().unsqueeze(0)
    spec = loss.spec

    def value(z, y):
        return meta_loss_per_sample(theta, z.unsqueeze(0), y, spec).mean()

    return torch.compile(value, dynamic=False)


def markdown(result: dict) -> str:
    lines = provenance_lines(result["provenance"]) + [""]
    lines.append(
        "One process, one torch thread on every side; medians of interleaved repeats. "
        "`MLNEvolver.fit` generation = (fit of 4 generations − fit of 1) / 3. GFLOP: matrix "
        "products and convolutions of the training steps and the validation pass "
        "(`FlopCounterMode`), elementwise work not counted."
    )
    for p in result["problems"]:
        s = p["settings"]
        lines += [
            "",
            f"**{p['problem']}**, popsize {s['popsize']} × {s['n_tasks']} tasks "
            f"({p['evaluations_per_generation']} classifiers, {s['n_shots']}-shot, "
            f"{s['inner_steps']} steps, lr {s['inner_lr']}, momentum {s['inner_momentum']}, "
            f"per-class MLN 2-16-1 on probabilities, {p['validation_images']} validation "
            f"images; {p['repeats']} repeats)",
            "",
            "| method | s / generation | ms / eval | GFLOP / generation | GFLOP/s "
            "| × hand-written loop | × fastest meta-loss loop | × cross-entropy loop |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, row in p["rows"].items():
            lines.append(
                f"| {key} | {row['seconds_per_generation']:.3f} | {row['ms_per_eval']:.1f} | "
                f"{row['gflop_per_generation']:.2f} | {row['gflop_per_second']:.1f} | "
                f"{row['x_hand_written_loop']:.2f}× | {row['x_fastest_meta_loss_loop']:.2f}× | "
                f"{row['x_cross_entropy_loop']:.2f}× |"
            )
    if "criterion" in result:
        c = result["criterion"]
        lines += [
            "",
            f"**One classifier, plain PyTorch loop** ({c['settings']['module']}, "
            f"{c['settings']['samples']} digits, full-batch SGD lr {c['settings']['inner_lr']}; "
            f"median of {c['repeats']} interleaved runs)",
            "",
            "| criterion | ms / 100 steps | × cross-entropy |",
            "|---|---|---|",
        ]
        for key, row in c["rows"].items():
            lines.append(
                f"| {key} | {row['ms_per_100_steps']:.1f} | {row['x_cross_entropy']:.2f}× |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument(
        "--problems",
        nargs="*",
        choices=("mlp-digits", "cnn-fashion-mnist"),
        default=("mlp-digits",),
    )
    parser.add_argument("--no-criterion", action="store_true", help="skip the criterion table")
    parser.add_argument(
        "--output", default=None, help="default: results/evolution_speed/speed-<problems>"
    )
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    name = "speed-" + ("-".join(args.problems) or "criterion") + ("-quick" if args.quick else "")

    def measure() -> dict:
        result = {"problems": [bench_problem(n, repeats, args.quick) for n in args.problems]}
        if not args.no_criterion:
            result["criterion"] = bench_criterion(repeats, args.quick)
        return result

    # one torch thread, the provenance of the commit the run starts from
    record_measurement(measure, markdown, Path(args.output) if args.output else RESULTS / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
