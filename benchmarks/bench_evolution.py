"""How fast is a generation of ``MLNEvolver.fit``, end to end? (issue 12)

Times ``fit`` through its public API. A generation's time is marginal: (fit of 4
generations - fit of 1) / 3, so set-up (validation, worker start, final re-evaluation of
the shortlist on one task) is reported apart as ``start-up = fit of 1 - one generation``.
In the same run, interleaved with the fits and on the same work (popsize x n_tasks
classifiers, same loss architecture, classifier and SGD settings):

  reference   -- the one-at-a-time loop (``nn.Module`` + ``torch.optim.SGD``,
                 :func:`sklearn_mln._evolution._inner.score_reference`), 1 torch thread
  reference x2 -- the same loop over 2 joblib workers (1 thread each): a one-at-a-time
                 loop that uses both cores
  kernel      -- the population kernel alone (``evaluate_population``, 1 process): the
                 gap between it and a ``fit`` generation is what ``fit`` adds

The calling process runs torch with 1 thread (on a busy 2-core machine 2 intra-op threads
can be many times slower); ``n_jobs=2`` workers get 1 thread each. Times are medians over
repeats; every measurement records ``os.getloadavg()``. A cProfile of the ``n_jobs=1``
fits gives the share of a marginal generation spent outside the kernels (training,
``train_population``, and prediction, ``predict_population``).

    python benchmarks/bench_evolution.py                 # MLP/digits and CNN/Fashion-MNIST
    python benchmarks/bench_evolution.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_mln import MLP, MetaLossNetwork, MLNEvolver
from sklearn_mln.datasets import load_digits_images, load_fashion_mnist
from sklearn_mln.toolkit import (
    InnerConfig,
    class_indices,
    draw_seeds,
    evaluate_population,
    make_task_batch,
    provenance,
    provenance_lines,
    resolve_module_factory,
    sample_tasks,
    score_reference,
)

RESULTS = Path(__file__).parent / "results" / "evolution_speed"
SEED = 0
#: functions whose cumulative time the profile reports (the kernel first)
PROFILED = {
    "train_population": "_inner.py:train_population",
    "predict_population": "_inner.py:predict_population",
    "init_population": "_inner.py:init_population",
    "activation_floats": "_inner.py:activation_floats",
    "cma ask": "_strategy.py:ask",
    "cma tell": "_strategy.py:tell",
    "task sampling": "_inner.py:make_task_batch",
}


def problem(name: str, quick: bool):
    """(X, y, estimator parameters) of a benchmark problem."""
    if name == "mlp-digits":
        X, y = load_digits_images(return_X_y=True)
        X = X.reshape(len(X), -1)
        params = dict(
            module=MLP(64, 10, (32,)),
            inputs="probs",
            hidden_sizes=(16,),
            inner_lr=0.5,
            inner_momentum=0.0,
        )
    else:
        X, y = load_fashion_mnist("train", return_X_y=True)
        rows = np.random.RandomState(SEED).permutation(len(y))[: 1000 if quick else 4000]
        X, y = X[rows], y[rows]  # validation_size 0.5: 2000 validation images
        params = dict(inner_lr=0.03, inner_momentum=0.9)
    size = dict(popsize=4, n_tasks=2) if quick else dict(popsize=16, n_tasks=4)
    params.update(size, n_shots=10, inner_steps=20 if quick else 100, n_reeval_tasks=1)
    return X, y, params


def same_work(X, y, params):
    """Spec, candidates, inner config, tasks and validation set of one generation's work."""
    rng = np.random.RandomState(SEED)
    order = rng.permutation(len(y))
    val, source = order[: len(y) // 2], order[len(y) // 2 :]
    tasks = sample_tasks(class_indices(y[source], 10), params["n_tasks"], 10, None, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, len(tasks)), X[source], y[source], y[val])
    net = MetaLossNetwork(
        inputs=params.get("inputs", "log_probs"),
        hidden_sizes=params.get("hidden_sizes", (8,)),
        random_state=SEED,
    )
    thetas = net.get_flat_params() + 0.02 * rng.standard_normal((params["popsize"], net.n_params))
    config = InnerConfig(
        resolve_module_factory(params.get("module"), X.shape[1:], 10),
        lr=params["inner_lr"],
        steps=params["inner_steps"],
        momentum=params["inner_momentum"],
    )
    return net.spec, thetas, config, batch, X[val]


def timed(fn) -> dict:
    start = time.perf_counter()
    out = fn()
    return {"seconds": time.perf_counter() - start, "load": os.getloadavg(), "out": out}


def fit(X, y, params, n_generations, n_jobs):
    return MLNEvolver(**params, n_generations=n_generations, n_jobs=n_jobs, random_state=SEED).fit(
        X, y
    )


def profile_fits(X, y, params) -> dict:
    """Share of a marginal ``n_jobs=1`` generation outside the training kernel."""
    cumulative = {}
    for n in (1, 4):
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        fit(X, y, params, n, 1)
        profiler.disable()
        total = time.perf_counter() - start
        stats = pstats.Stats(profiler).stats
        found = {"total": total}
        for label, key in PROFILED.items():
            file, func = key.split(":")
            found[label] = sum(
                row[3]
                for (path, _, name), row in stats.items()
                if name == func and path.endswith(file)
            )
        cumulative[n] = found
    per_generation = {k: (cumulative[4][k] - cumulative[1][k]) / 3 for k in cumulative[1]}
    kernels = per_generation["train_population"] + per_generation["predict_population"]
    return {
        "seconds_per_generation": per_generation,
        "outside_kernel_share": 1 - kernels / per_generation["total"],
        "outside_training_share": 1 - per_generation["train_population"] / per_generation["total"],
        "load": os.getloadavg(),
    }


def bench_problem(name: str, repeats: int, quick: bool, n_jobs_list) -> dict:
    X, y, params = problem(name, quick)
    spec, thetas, config, batch, X_val = same_work(X, y, params)
    n_evals = len(thetas) * batch.n_tasks
    runs: dict[str, list[dict]] = {}

    def record(key, fn):
        result = timed(fn)
        runs.setdefault(key, []).append({"seconds": result["seconds"], "load": result["load"]})
        print(
            f"  {name} {key}: {result['seconds']:.2f} s, load {result['load'][0]:.2f}", flush=True
        )
        return result["out"]

    cold = {}
    for n_jobs in n_jobs_list:  # the first fit starts the workers: report it apart
        cold[n_jobs] = timed(lambda n_jobs=n_jobs: fit(X, y, params, 1, n_jobs))["seconds"]
    losses = [MetaLossNetwork.from_spec(spec, t) for t in thetas]
    for _ in range(repeats):
        for n_jobs in n_jobs_list:
            record(f"fit 1, n_jobs={n_jobs}", lambda n_jobs=n_jobs: fit(X, y, params, 1, n_jobs))
            evo = record(
                f"fit 4, n_jobs={n_jobs}", lambda n_jobs=n_jobs: fit(X, y, params, 4, n_jobs)
            )
            runs.setdefault(f"history, n_jobs={n_jobs}", []).append(
                [h["seconds"] for h in evo.history_]
            )
        record("reference", lambda: score_reference(losses, config, batch, X_val))
        record(
            "reference x2",
            lambda: evaluate_population(
                thetas, spec, config, batch, X_val, n_jobs=2, vectorized=False
            ),
        )
        record("kernel", lambda: evaluate_population(thetas, spec, config, batch, X_val, n_jobs=1))

    def median(key):
        return float(np.median([r["seconds"] for r in runs[key]]))

    rows = {}
    for n_jobs in n_jobs_list:
        generation = (median(f"fit 4, n_jobs={n_jobs}") - median(f"fit 1, n_jobs={n_jobs}")) / 3
        rows[f"fit, n_jobs={n_jobs}"] = {
            "seconds_per_generation": generation,
            "startup_seconds": median(f"fit 1, n_jobs={n_jobs}") - generation,
            "cold_first_fit_seconds": cold[n_jobs],
            "history_median_seconds": float(
                np.median([s[1:] for s in runs[f"history, n_jobs={n_jobs}"]])
            ),
        }
    for key in ("reference", "reference x2", "kernel"):
        rows[key] = {"seconds_per_generation": median(key)}
    for row in rows.values():
        row["ms_per_eval"] = 1000 * row["seconds_per_generation"] / n_evals
        row["speedup_vs_reference"] = rows["reference"]["seconds_per_generation"] / max(
            row["seconds_per_generation"], 1e-9
        )
        row["speedup_vs_reference_x2"] = rows["reference x2"]["seconds_per_generation"] / max(
            row["seconds_per_generation"], 1e-9
        )
    loads = [r["load"][0] for rs in runs.values() for r in rs if isinstance(r, dict)]
    settings = {k: v for k, v in params.items() if k != "module"}
    settings["module"] = repr(params.get("module")) if "module" in params else "default"
    settings["hidden_sizes"] = list(settings.get("hidden_sizes", (8,)))
    return {
        "problem": name,
        "settings": settings,
        "repeats": repeats,
        "evaluations_per_generation": n_evals,
        "validation_images": len(X_val),
        "rows": rows,
        "profile": profile_fits(X, y, params),
        "load_1min": {"min": min(loads), "max": max(loads), "mean": float(np.mean(loads))},
        "raw": runs,
    }


def markdown(result: dict) -> str:
    lines = provenance_lines(result["provenance"]) + [""]
    lines.append(
        "Per-generation time of `MLNEvolver.fit` = (fit of 4 generations − fit of 1) / 3; "
        "start-up = fit of 1 − one generation (cold: the first fit, which starts the "
        "workers). Medians of interleaved repeats; the calling process at 1 torch thread, "
        "`n_jobs=2` workers 1 thread each."
    )
    for p in result["problems"]:
        s = p["settings"]
        load = p["load_1min"]
        lines += [
            "",
            f"**{p['problem']}**, popsize {s['popsize']} × {s['n_tasks']} tasks "
            f"({p['evaluations_per_generation']} classifiers, {s['n_shots']}-shot, "
            f"{s['inner_steps']} steps, lr {s['inner_lr']}, momentum {s['inner_momentum']}, "
            f"{p['validation_images']} validation images; {p['repeats']} repeats); "
            "1-min load average "
            f"{load['min']:.1f}–{load['max']:.1f} (mean {load['mean']:.1f}) on "
            f"{result['provenance']['cores']} cores",
            "",
            "| method | s / generation | ms / eval | × reference | × reference x2 "
            "| start-up s (cold) |",
            "|---|---|---|---|---|---|",
        ]
        for key, row in p["rows"].items():
            start = "–"
            if "startup_seconds" in row:
                cold = row["cold_first_fit_seconds"] - row["seconds_per_generation"]
                start = f"{row['startup_seconds']:.2f} ({cold:.2f})"
            lines.append(
                f"| {key} | {row['seconds_per_generation']:.3f} | {row['ms_per_eval']:.1f} | "
                f"{row['speedup_vs_reference']:.2f}× | {row['speedup_vs_reference_x2']:.2f}× "
                f"| {start} |"
            )
        prof = p["profile"]
        parts = ", ".join(
            f"{k} {1000 * v:.0f} ms"
            for k, v in prof["seconds_per_generation"].items()
            if k != "total" and v > 0.0005
        )
        lines += [
            "",
            f"Profile of a marginal `n_jobs=1` generation (cProfile, "
            f"{1000 * prof['seconds_per_generation']['total']:.0f} ms in all): "
            f"{100 * prof['outside_kernel_share']:.1f} % outside the kernels (training, "
            f"`train_population`, and prediction, `predict_population`), "
            f"{100 * prof.get('outside_training_share', 0):.1f} % outside training; {parts}.",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cnn-repeats", type=int, default=None, help="repeats of the CNN (default: --repeats)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument(
        "--problems",
        nargs="+",
        choices=("mlp-digits", "cnn-fashion-mnist"),
        default=("mlp-digits", "cnn-fashion-mnist"),
    )
    parser.add_argument("--n-jobs", type=int, nargs="+", default=(1, 2))
    parser.add_argument("--output", default=str(RESULTS / "evolution_speed"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    record = provenance(seed=SEED, threads=1)  # the commit the run starts from
    torch.set_num_threads(1)
    repeats = {"mlp-digits": 1 if args.quick else args.repeats}
    repeats["cnn-fashion-mnist"] = 1 if args.quick else (args.cnn_repeats or args.repeats)
    problems = [bench_problem(n, repeats[n], args.quick, args.n_jobs) for n in args.problems]
    result = {"problems": problems}
    result["provenance"] = {**record, "wall_seconds": round(time.perf_counter() - started, 2)}
    table = markdown(result)
    print("\n" + table)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(result, indent=2)), (".md", table + "\n")):
        tmp = output.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, output.with_suffix(suffix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
