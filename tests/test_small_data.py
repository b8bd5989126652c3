"""``python -m sklearn_mln benchmark`` end to end, on tiny settings (the protocol itself is
tested in test_benchmark.py)."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from sklearn_mln import MetaLossNetwork
from sklearn_mln._cli._main import main
from sklearn_mln._utils._provenance import REQUIRED_KEYS
from sklearn_mln.benchmark import CLASSICAL_GRIDS, BenchmarkResult

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.usefixtures("no_data_env", "one_torch_thread")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
TINY = ["--tasks", "3", "--tuning-tasks", "2", "--grid-lr", "0.03", "0.1", "--grid-steps", "10"]
OUTPUTS = {"results.json", "results.md", "accuracy_vs_k.png"}


def _check_report(out: Path, baselines, learned, architectures, ks) -> BenchmarkResult:
    assert {p.name for p in out.iterdir()} == OUTPUTS  # nothing else, no temp files left
    assert out.joinpath("accuracy_vs_k.png").read_bytes().startswith(b"\x89PNG")
    markdown = out.joinpath("results.md").read_text()
    text = out.joinpath("results.json").read_text()
    result = BenchmarkResult.load(out / "results.json")
    assert json.dumps(result.to_dict(), indent=1) + "\n" == text  # read back as written
    assert result.provenance["command"].startswith("python -m sklearn_mln benchmark ")
    assert set(REQUIRED_KEYS) <= set(result.provenance)
    assert list(result.settings.baselines) == list(baselines)
    assert list(result.settings.losses) == list(learned)
    assert [(row.architecture, row.k) for row in result.rows] == [
        (a, k) for k in ks for a in architectures
    ]
    for row in result.rows:
        assert f"## {row.architecture}, k = {row.k}" in markdown
        entries = row.losses
        assert list(entries) == [*baselines, *learned]
        # the baseline is the classical loss with the best tuning score, not the best test score
        assert row.baseline == max(baselines, key=lambda n: entries[n].tuning_score)
        base = np.asarray(row.baseline_result.test_accuracy)
        for name, entry in entries.items():
            acc = np.asarray(entry.test_accuracy)
            assert acc.shape == (result.settings.n_tasks,)
            own = CLASSICAL_GRIDS.get(name, {})
            assert set(entry.params) == set(own)  # tuned over its own hyperparameters
            points = {(tuple(p.params.items()), p.lr, p.steps) for p in entry.tuning_grid}
            assert (tuple(entry.params.items()), entry.lr, entry.steps) in points
            summary = entry.summary
            assert summary.delta == pytest.approx((acc - base).mean(), abs=1e-12)
            assert summary.wins + summary.ties + summary.losses == len(acc)
    return result


@pytest.mark.skipif(not FASHION_SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_smoke(tmp_path, capsys):
    mln = tmp_path / "ls.mln"
    MetaLossNetwork.from_label_smoothing(10, 0.1, random_state=0).save(mln)
    out = tmp_path / "out"
    argv = ["benchmark", "--test-size", "300", "--pool-size", "600", "--ks", "1", "5"]
    argv += [*TINY, "--architectures", "mlp", "--loss", f"ls_mln={mln}", "--output", str(out)]
    assert main([*argv, "--threads", "1"]) == 0
    result = _check_report(out, list(CLASSICAL_GRIDS), ["ls_mln"], ["mlp"], [1, 5])
    assert result.settings.n_test == 300 and result.settings.n_pool == 600
    assert result.provenance["torch_threads"] == 1
    assert result.settings.grid_lr == [0.03, 0.1] and result.settings.grid_steps == [10]
    # the MLN that equals label smoothing 0.1 trains like it (up to float rounding)
    for row in result.rows:
        ls = {
            (p.lr, p.steps): p.screening_score
            for p in row.losses["label_smoothing"].tuning_grid
            if p.params == {"smoothing": 0.1}
        }
        for p in row.losses["ls_mln"].tuning_grid:
            assert p.screening_score == pytest.approx(ls[(p.lr, p.steps)], abs=0.01)
    # progress: one stderr line per (architecture, k, loss), then where the files went
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 * (len(CLASSICAL_GRIDS) + 1) + 1
    assert lines[0].startswith("[mlp k=1] cross_entropy: lr ") and str(out) in lines[-1]


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
    argv += ["--baselines", "cross_entropy", "label_smoothing"]
    assert main(argv) == 0
    baselines = ["cross_entropy", "label_smoothing"]
    result = _check_report(out, baselines, [], ["mlp", "cnn"], [1, 2])
    assert result.settings.dataset == "cifar10"
    assert result.settings.n_pool == 200 and result.settings.n_test == 40


def test_benchmark_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    mln = tmp_path / "x.mln"
    MetaLossNetwork(random_state=0).save(mln)
    out = tmp_path / "out"
    base = ["benchmark", "--dataset", "digits", "--output", str(out)]
    for extra, message in (
        (["--loss", f"mse={mln}"], "taken by classical"),
        (["--loss", f"a={mln}", "--loss", f"a={mln}"], "given twice"),
        (["--ks", "500"], "k=500"),
        (["--loss", str(tmp_path / "missing.mln")], "missing.mln"),
    ):
        with pytest.raises(SystemExit, match=message):
            main([*base, *extra])
    assert not out.exists()
