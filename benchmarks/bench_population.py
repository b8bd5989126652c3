"""How fast is one generation's fitness evaluation? (issue: train a population at once)

Every method evaluates the same candidate losses on the same tasks from the same seeds
(10-shot tasks, 100 full-batch SGD steps, accuracy on a validation set):

  a. reference  -- one classifier at a time, nn.Module + torch.optim.SGD, torch defaults
  a1. the same with 1 torch thread (on a busy 2-core machine torch's default of 2 threads
      is many times slower for these tiny ops: a fairer baseline, reported beside (a))
  b. joblib x2  -- (a) spread over 2 joblib workers (1 thread each)
  c. vectorized -- the library's population path in one process
  d. default    -- what MLNEvolver(n_jobs=2) does: (c) chunked over 2 workers

Ratios are to (a) measured in the same run; times are medians over repeats. In the large
setting (a) and (b) are timed on a subset of the candidates (time per evaluation does not
depend on the population size for a one-at-a-time loop).

    python benchmarks/bench_population.py                    # full run (~63 min on 2 cores)
    python benchmarks/bench_population.py --quick            # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_mln import MetaLossNetwork
from sklearn_mln.datasets import load_digits_images, load_fashion_mnist
from sklearn_mln.toolkit import (
    CMAStrategy,
    InnerConfig,
    class_indices,
    default_module_factory,
    draw_seeds,
    evaluate_population,
    make_task_batch,
    provenance,
    provenance_lines,
    sample_tasks,
    score_reference,
)

RESULTS = Path(__file__).parent / "results"


def problem(name: str, n_val: int, seed: int = 0):
    """(X_source, y_source, X_val, y_val, config) of a benchmark problem."""
    rng = np.random.RandomState(seed)
    if name == "mlp-digits":
        X, y = load_digits_images(return_X_y=True)
        X = X.reshape(len(X), -1)
        lr = 0.1
    else:
        X, y = load_fashion_mnist("train", return_X_y=True)
        lr = 0.03
    order = rng.permutation(len(y))
    val, source = order[:n_val], order[n_val:]
    config = InnerConfig(default_module_factory(X.shape[1:], 10), lr=lr, steps=100)
    return X[source], y[source], X[val], y[val], config


def candidates(n: int, seed: int = 0) -> tuple[np.ndarray, MetaLossNetwork]:
    """``n`` CE-anchored MLNs perturbed as in an early generation (sigma 0.05)."""
    net = MetaLossNetwork(random_state=seed)
    rng = np.random.RandomState(seed)
    thetas = net.get_flat_params() + 0.05 * rng.standard_normal((n, net.n_params))
    return thetas, net


def time_method(method: str, thetas, spec, config, batch, X_val) -> float:
    start = time.perf_counter()
    if method in ("a", "a1"):
        threads = torch.get_num_threads()
        if method == "a1":
            torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                score_reference(
                    [MetaLossNetwork.from_spec(spec, t) for t in thetas], config, batch, X_val
                )
        finally:
            torch.set_num_threads(threads)
    else:
        n_jobs = 1 if method == "c" else 2
        evaluate_population(
            thetas, spec, config, batch, X_val, n_jobs=n_jobs, vectorized=method != "b"
        )
    return time.perf_counter() - start


def bench_setting(
    name, popsize, n_tasks, repeats, subset, n_val, methods=("a", "a1", "b", "c", "d")
):
    X_source, y_source, X_val, y_val, config = problem(name, n_val)
    rng = np.random.RandomState(1)
    tasks = sample_tasks(class_indices(y_source, 10), n_tasks, 10, None, rng)
    batch = make_task_batch(tasks, draw_seeds(rng, n_tasks), X_source, y_source, y_val)
    thetas, net = candidates(popsize)
    rows = {}
    evaluate_population(thetas[:2], net.spec, config, batch, X_val, n_jobs=2)  # warm workers
    for method in methods:
        use = thetas[:subset] if method in ("a", "a1", "b") and subset else thetas
        n_evals = len(use) * n_tasks
        times = [time_method(method, use, net.spec, config, batch, X_val) for _ in range(repeats)]
        median = float(np.median(times))
        rows[method] = {
            "evaluations": n_evals,
            "seconds_median": median,
            "seconds_all": times,
            "ms_per_eval": 1000 * median / n_evals,
            "evals_per_s": n_evals / median,
        }
        print(
            f"  {name} {popsize}x{n_tasks} ({method}) {rows[method]['ms_per_eval']:.1f} ms/eval",
            flush=True,
        )
    for row in rows.values():  # (a) is always run: every ratio is to it
        row["ratio_to_a"] = rows["a"]["ms_per_eval"] / row["ms_per_eval"]
        row["ratio_to_a1"] = rows["a1"]["ms_per_eval"] / row["ms_per_eval"]
    generation_seconds = rows["d"]["seconds_median"]
    cma_seconds = cma_overhead(net.n_params, popsize)
    return {
        "setting": f"{name}, popsize {popsize} x {n_tasks} tasks",
        "methods": rows,
        "cma_seconds_per_generation": cma_seconds,
        "cma_share_of_generation": cma_seconds / (generation_seconds + cma_seconds),
    }


def cma_overhead(n_params: int, popsize: int, repeats: int = 20) -> float:
    """Median seconds of one CMA-ES ask + tell."""
    strategy = CMAStrategy(np.zeros(n_params), 0.05, popsize, seed=1)
    rng = np.random.RandomState(0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        solutions = strategy.ask()
        strategy.tell(solutions, rng.rand(popsize))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def peak_rss_of_generation(popsize: int, n_tasks: int) -> dict:
    """Peak RSS (parent + joblib workers) of one MLNEvolver generation on all of
    Fashion-MNIST's training split, measured in a fresh subprocess."""
    code = f"""
import json, os, time
from sklearn_mln import MLNEvolver
from sklearn_mln.datasets import load_fashion_mnist
X, y = load_fashion_mnist("train", return_X_y=True)
start = time.perf_counter()
MLNEvolver(popsize={popsize}, n_tasks={n_tasks}, n_generations=1, n_reeval_tasks=1,
           n_jobs=2, random_state=0).fit(X, y)
seconds = time.perf_counter() - start
def hwm(pid):
    for line in open(f"/proc/{{pid}}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
children = [p for p in os.listdir("/proc") if p.isdigit()]
workers = []
for p in children:
    try:
        stat = open(f"/proc/{{p}}/stat").read().split()
        if int(stat[3]) == os.getpid():
            workers.append(hwm(p))
    except (OSError, ValueError, TypeError):
        pass
print(json.dumps({{"parent": hwm(os.getpid()), "workers": workers, "seconds": seconds}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    total = data["parent"] + sum(w for w in data["workers"] if w)
    return {
        "setting": f"MLNEvolver CNN, popsize {popsize} x {n_tasks} tasks, 60000-image pool",
        "parent_peak_bytes": data["parent"],
        "worker_peak_bytes": data["workers"],
        "total_peak_gib": total / 2**30,
        "seconds": data["seconds"],
    }


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "device": "cpu",
    }


def markdown(result: dict) -> str:
    names = {
        "a1": "reference, 1 torch thread",
        "a": "reference (one at a time, nn.Module + optim.SGD)",
        "b": "joblib, 2 workers over (a)",
        "c": "vectorized, 1 process",
        "d": "library default (MLNEvolver n_jobs=2)",
    }
    lines = []
    for setting in result["settings"]:
        lines += [
            f"**{setting['setting']}** (library commit {setting.get('commit', 'unknown')}) "
            "— CMA-ES ask/tell "
            f"{1000 * setting['cma_seconds_per_generation']:.1f} ms "
            f"({100 * setting['cma_share_of_generation']:.2f} % of a generation)",
            "",
            "| method | evals/s | ms / eval | ratio to (a) | ratio to (a1) |",
            "|---|---|---|---|---|",
        ]
        for key, row in setting["methods"].items():
            lines.append(
                f"| ({key}) {names[key]} | {row['evals_per_s']:.1f} | "
                f"{row['ms_per_eval']:.1f} | {row['ratio_to_a']:.2f}× | "
                f"{row['ratio_to_a1']:.2f}× |"
            )
        lines.append("")
    if "memory" in result:
        m = result["memory"]
        workers = ", ".join(f"{w / 2**30:.2f}" for w in m["worker_peak_bytes"] if w)
        lines.append(
            f"Peak RSS, {m['setting']} (library commit {m.get('commit', 'unknown')}): "
            f"{m['total_peak_gib']:.2f} GiB, the sum of each process's peak (parent "
            f"{m['parent_peak_bytes'] / 2**30:.2f} GiB; children {workers} GiB); one "
            f"generation in {m['seconds']:.0f} s."
        )
        if "provenance" in m:  # of this measurement only: the tables above are older
            record = m["provenance"]
            commit = record["commit"] + (" (with uncommitted changes)" if record["dirty"] else "")
            versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v)
            lines += [
                "",
                f"Peak RSS measured by `{record['command']}` on {record['date']} at commit "
                f"{commit}; {record['machine']}, {record['cores']} cores; {versions}.",
            ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="only measure peak RSS and add it to an existing --output JSON",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the .md from the existing .json"
    )
    parser.add_argument(
        "--problems",
        nargs="+",
        choices=("mlp-digits", "cnn-fashion-mnist"),
        default=("mlp-digits", "cnn-fashion-mnist"),
        help="which problems to time",
    )
    parser.add_argument("--output", default=str(RESULTS / "population"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    output = Path(args.output)
    if args.render_only:
        _write(json.loads(output.with_suffix(".json").read_text()), output)
        return 0
    if args.memory_only:
        result = json.loads(output.with_suffix(".json").read_text())
        record = provenance(seed=0, threads=torch.get_num_threads())
        result["memory"] = {
            **peak_rss_of_generation(32, 8),
            "commit": _commit(),
            "provenance": {**record, "wall_seconds": round(time.perf_counter() - started, 2)},
        }
        _write(result, output)
        return 0
    settings = (
        [("mlp-digits", 4, 2, 0, 600), ("cnn-fashion-mnist", 2, 2, 0, 500)]
        if args.quick
        else [
            ("mlp-digits", 16, 4, 0, 897),
            ("mlp-digits", 32, 8, 8, 897),
            ("cnn-fashion-mnist", 16, 4, 0, 2000),
            ("cnn-fashion-mnist", 32, 8, 4, 2000),
        ]
    )
    record = provenance(seed=0, threads=torch.get_num_threads())  # the code that runs
    result = {"machine": machine(), "repeats": args.repeats, "settings": []}
    settings = [s for s in settings if s[0] in args.problems]
    for name, popsize, n_tasks, subset, n_val, *methods in settings:
        repeats = 1 if args.quick else args.repeats
        row = bench_setting(name, popsize, n_tasks, repeats, subset, n_val, *methods)
        result["settings"].append({**row, "commit": _commit()})
    if not (args.quick or args.skip_memory):
        result["memory"] = {**peak_rss_of_generation(32, 8), "commit": _commit()}
    # one run, one provenance: files merged from several runs were what made the old
    # results unverifiable, so every run writes its whole file
    result["provenance"] = {**record, "wall_seconds": round(time.perf_counter() - started, 2)}
    _write(result, output)
    return 0


def _commit() -> str:
    """The library commit a setting was timed at (``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _write(result: dict, output: Path) -> None:
    table = markdown(result)
    print("\n" + table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(result, indent=2))
    header = ""
    if "provenance" in result:  # the whole file is one run's: say which
        header = "\n".join(
            ["# Population evaluation speed", "", *provenance_lines(result["provenance"])]
        )
    output.with_suffix(".md").write_text(header + "\n\n" + table + "\n" if header else table + "\n")


if __name__ == "__main__":
    sys.exit(main())
