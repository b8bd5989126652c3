"""The benchmark's typed result: the committed results files load into it and write back
byte for byte (a tiny real run's result is checked in test_benchmark.py)."""

import json
from pathlib import Path

import pytest

from sklearn_mln.benchmark import BenchmarkResult, BenchmarkRow, LossResult, TuningPoint

ROOT = Path(__file__).resolve().parents[1]
#: every committed result of the small-data benchmark (other runs write other results.json)
COMMITTED = sorted(
    path
    for path in (ROOT / "benchmarks" / "results").glob("*/results.json")
    if {"settings", "results"} <= set(json.loads(path.read_text()))
)
MLP_K20_50 = ROOT / "benchmarks" / "results" / "small_data_v2_mlp_k20_50" / "results.json"


def test_the_committed_results_are_found():
    assert MLP_K20_50 in COMMITTED and len(COMMITTED) >= 10


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_a_committed_result_loads_and_writes_back_unchanged(path):
    text = path.read_text()
    result = BenchmarkResult.load(path)
    assert json.dumps(result.to_dict(), indent=1) + "\n" == text
    assert BenchmarkResult.from_dict(json.loads(text)).to_dict() == json.loads(text)


def test_a_committed_result_reads_by_attribute():
    result = BenchmarkResult.load(MLP_K20_50)
    settings = result.settings
    assert settings.dataset == "fashion-mnist" and settings.ks == [20, 50]
    assert [(row.architecture, row.k) for row in result.rows] == [("mlp", 20), ("mlp", 50)]
    for row in result.rows:
        assert isinstance(row, BenchmarkRow) and row.architecture in settings.architectures
        assert list(row.losses) == [*settings.baselines, *settings.losses]
        assert row.baseline_result is row.losses[row.baseline]
        assert row.baseline_result.kind == "classical"
        assert row.baseline_result.summary.delta == 0.0
        for name, entry in row.losses.items():
            assert isinstance(entry, LossResult) and entry.summary.loss == name
            assert entry.seconds.tuning > 0 and entry.seconds.test > 0
            assert entry.kind == "learned" or entry.seconds.evolution is None
            assert len(entry.test_accuracy) == settings.n_tasks
            assert all(isinstance(point, TuningPoint) for point in entry.tuning_grid)
            finalists = [point for point in entry.tuning_grid if point.score is not None]
            assert finalists and all(point.n_failed is not None for point in finalists)
            assert max(point.score for point in finalists) == entry.tuning_score
    assert "commit" in result.provenance


def test_what_a_run_did_not_record_is_left_out_of_its_file():
    record = BenchmarkResult.load(MLP_K20_50).to_dict()
    del record["settings"]["dataset"], record["settings"]["loss_files"]
    point = record["results"][0]["losses"]["mse"]["tuning_grid"][0]
    point.pop("score", None)
    point.pop("n_failed", None)
    result = BenchmarkResult.from_dict(record)
    assert result.settings.dataset is None and result.settings.loss_files is None
    assert result.rows[0].losses["mse"].tuning_grid[0].score is None
    assert result.to_dict() == record
