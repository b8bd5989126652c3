"""Smoke tests of the small-data benchmark (benchmarks/small_data.py, issue 5): tiny settings."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sklearn_mln import ClassicalLoss, MetaLossNetwork
from sklearn_mln.__main__ import main
from sklearn_mln._evaluation import BENCHMARK_BASELINES, small_data_benchmark
from sklearn_mln.datasets import load_digits_images

pytest.importorskip("matplotlib")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
TINY = ["--tasks", "3", "--tuning-tasks", "2", "--grid-lr", "0.03", "0.1", "--grid-steps", "10"]
OUTPUTS = {"results.json", "results.md", "accuracy_vs_k.png"}


@pytest.fixture(autouse=True)
def _no_env_data(monkeypatch):
    monkeypatch.delenv("SKLEARN_MLN_DATA", raising=False)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny ops on a machine busy with other jobs are far faster so."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _check_report(out: Path, losses: list[str], architectures: list[str], ks: list[int]) -> dict:
    assert {p.name for p in out.iterdir()} == OUTPUTS  # nothing else, no temp files left
    assert out.joinpath("accuracy_vs_k.png").read_bytes().startswith(b"\x89PNG")
    markdown = out.joinpath("results.md").read_text()
    result = json.loads(out.joinpath("results.json").read_text())
    assert result["command"].startswith("python -m sklearn_mln benchmark ")
    assert list(result["settings"]["losses"]) == losses
    assert [(e["architecture"], e["k"]) for e in result["results"]] == [
        (a, k) for k in ks for a in architectures
    ]
    for entry in result["results"]:
        assert f"## {entry['architecture']}, k = {entry['k']}" in markdown
        records = entry["losses"]
        assert list(records) == losses
        # the baseline is the classical loss with the best tuning score, not the best test score
        classical = [n for n in losses if n in BENCHMARK_BASELINES]
        assert entry["baseline"] == max(classical, key=lambda n: records[n]["tuning_score"])
        base = np.asarray(records[entry["baseline"]]["test_accuracy"])
        for record in records.values():
            acc = np.asarray(record["test_accuracy"])
            assert acc.shape == (result["settings"]["n_tasks"],)
            assert record["tuning_score"] == max(p["score"] for p in record["tuning_grid"])
            assert len(record["tuning_grid"]) == len(result["settings"]["grid_lr"]) * len(
                result["settings"]["grid_steps"]
            )
            assert (record["lr"], record["steps"]) in {
                (p["lr"], p["steps"]) for p in record["tuning_grid"]
            }
            summary = record["summary"]
            assert summary["delta"] == pytest.approx((acc - base).mean(), abs=1e-12)
            assert summary["mean"] == pytest.approx(acc.mean(), abs=1e-12)
            assert summary["wins"] + summary["ties"] + summary["losses"] == len(acc)
    return result


@pytest.mark.skipif(not FASHION_SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_smoke(tmp_path, capsys):
    mln = tmp_path / "ls.mln"
    MetaLossNetwork.from_label_smoothing(10, 0.1, random_state=0).save(mln)
    out = tmp_path / "out"
    argv = ["benchmark", "--test-size", "300", "--pool-size", "600", "--ks", "1", "5"]
    argv += [*TINY, "--architectures", "mlp", "--loss", f"ls_mln={mln}", "--output", str(out)]
    assert main([*argv, "--threads", "1"]) == 0
    losses = [*BENCHMARK_BASELINES, "ls_mln"]
    result = _check_report(out, losses, ["mlp"], [1, 5])
    assert result["settings"]["n_test"] == 300 and result["settings"]["n_pool"] == 600
    assert result["settings"]["torch_threads"] == 1
    assert {tuple(result["settings"][k]) for k in ("grid_lr", "grid_steps")} == {(0.03, 0.1), (10,)}
    # the MLN that equals label smoothing trains like it (up to float rounding)
    for entry in result["results"]:
        ls, mln_record = entry["losses"]["label_smoothing"], entry["losses"]["ls_mln"]
        for a, b in zip(ls["tuning_grid"], mln_record["tuning_grid"]):
            assert a["score"] == pytest.approx(b["score"], abs=0.01)
    # progress: one stderr line per (architecture, k, loss), then where the files went
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 * len(losses) + 1
    assert lines[0].startswith("[mlp k=1] cross_entropy: lr ") and str(out) in lines[-1]


@pytest.fixture(scope="module")
def digits_splits():
    X, y = load_digits_images(return_X_y=True)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(y))
    return X[order[:900]], y[order[:900]], X[order[900:]], y[order[900:]]


def test_tuning_never_sees_the_test_split(digits_splits):
    X_pool, y_pool, X_rest, y_rest = digits_splits
    losses = {
        "cross_entropy": ClassicalLoss("cross_entropy"),
        "ce_again": ClassicalLoss("cross_entropy"),
        "mse": ClassicalLoss("mse"),
    }
    kwargs = dict(
        architectures=["mlp", "cnn"], ks=[2], n_tasks=3, n_tuning_tasks=2,
        grid_lr=[0.1, 0.3], grid_steps=[5, 15], random_state=3,
    )  # fmt: skip
    a = small_data_benchmark(X_pool, y_pool, X_rest[:450], y_rest[:450], losses, **kwargs)
    b = small_data_benchmark(X_pool, y_pool, X_rest[450:], y_rest[450:], losses, **kwargs)
    for entry_a, entry_b in zip(a["results"], b["results"]):
        assert entry_a["baseline"] == entry_b["baseline"]
        for name in losses:
            ra, rb = entry_a["losses"][name], entry_b["losses"][name]
            assert ra["tuning_grid"] == rb["tuning_grid"]
            assert (ra["lr"], ra["steps"]) == (rb["lr"], rb["steps"])
        mse_a, mse_b = entry_a["losses"]["mse"], entry_b["losses"]["mse"]
        assert mse_a["test_accuracy"] != mse_b["test_accuracy"]  # the test split did change
        # paired: the same loss twice sees the same tasks and initial weights
        ce, ce_again = entry_a["losses"]["cross_entropy"], entry_a["losses"]["ce_again"]
        assert ce_again["test_accuracy"] == ce["test_accuracy"]
        assert ce_again["summary"]["ties"] == 3


def test_k_too_large_and_name_clash(digits_splits, tmp_path):
    X_pool, y_pool, X_test, y_test = digits_splits
    with pytest.raises(ValueError, match="k=500"):
        small_data_benchmark(
            X_pool, y_pool, X_test, y_test, {"mse": ClassicalLoss("mse")}, ks=[500]
        )
    with pytest.raises(ValueError, match="classical"):
        small_data_benchmark(X_pool, y_pool, X_test, y_test, {}, ks=[1])
    mln = tmp_path / "x.mln"
    MetaLossNetwork(random_state=0).save(mln)
    with pytest.raises(SystemExit, match="already taken"):
        main(["benchmark", "--dataset", "digits", "--loss", f"mse={mln}"])
    assert not (tmp_path / "out").exists()


def _write_cifar(folder: Path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [c for c in range(10) for _ in range(per_class)]
        # class-dependent brightness, so there is something to learn
        data = rng.integers(0, 128, size=(len(labels), 3072), dtype=np.uint8)
        data += (np.asarray(labels, dtype=np.uint8) * 12)[:, None]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels}, fh)


def test_cifar10_on_generated_batches(tmp_path):
    data = tmp_path / "cifar-10-batches-py"
    data.mkdir()
    _write_cifar(data, per_class=4)
    out = tmp_path / "out"
    argv = ["benchmark", "--dataset", "cifar10", "--data-home", str(tmp_path), "--ks", "1", "2"]
    argv += [*TINY, "--architectures", "mlp", "cnn", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    result = _check_report(out, list(BENCHMARK_BASELINES), ["mlp", "cnn"], [1, 2])
    assert result["settings"]["dataset"] == "cifar10"
    assert result["settings"]["n_pool"] == 200 and result["settings"]["n_test"] == 40


def test_benchmark_baselines_option(tmp_path):
    """--baselines limits the classical losses; the baseline is the best of those."""
    out = tmp_path / "out"
    argv = ["benchmark", "--dataset", "digits", "--ks", "1", *TINY, "--architectures", "mlp"]
    argv += ["--baselines", "cross_entropy", "focal", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    result = _check_report(out, ["cross_entropy", "focal"], ["mlp"], [1])
    assert result["results"][0]["baseline"] in ("cross_entropy", "focal")
