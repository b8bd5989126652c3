"""The provenance record: what it says about the tree, the machine and its load."""

import json
import shutil
import subprocess

import pytest

from sklearn_mln._utils._provenance import (
    REQUIRED_KEYS,
    RESULTS,
    SIMD_FLAGS,
    provenance,
    provenance_lines,
    tree_is_dirty,
)


@pytest.fixture
def checkout(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / RESULTS).mkdir(parents=True)
    (tmp_path / RESULTS / "table.md").write_text("| a |\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    return tmp_path


def test_a_rewritten_results_file_does_not_make_the_tree_dirty(checkout):
    assert tree_is_dirty(checkout) is False
    (checkout / RESULTS / "table.md").write_text("| b |\n")
    assert tree_is_dirty(checkout) is False
    (checkout / "code.py").write_text("x = 2\n")
    assert tree_is_dirty(checkout) is True


def test_outside_a_checkout_dirtiness_is_unknown(tmp_path):
    assert tree_is_dirty(tmp_path) is None


def test_the_record_says_the_load_it_was_timed_under():
    record = provenance(seed=3)
    assert set(REQUIRED_KEYS) <= set(record)
    assert record["simd"] is None or set(record["simd"]) <= set(SIMD_FLAGS)
    assert len(record["load_average"]) == 3 and min(record["load_average"]) >= 0
    assert f"load average {record['load_average'][0]:.2f}" in "\n".join(provenance_lines(record))


def test_provenance_records_the_device_only_when_given():
    from sklearn_mln._utils._provenance import provenance, provenance_lines

    assert "device" not in provenance()
    record = provenance(device="cpu")
    assert record["device"] == "cpu"
    assert not any(line.startswith("- device") for line in provenance_lines(record))
    gpu = {**record, "device": "cuda:0 (NVIDIA H200)"}
    assert "- device: cuda:0 (NVIDIA H200)" in provenance_lines(gpu)


def test_an_evolved_loss_records_the_device_it_was_evolved_on(digits, tiny_evolver):
    from sklearn_mln import MLNEvolver

    X, y = digits
    evolver = MLNEvolver(**tiny_evolver).fit(X[:300], y[:300])
    assert evolver.meta_loss_.metadata["device"] == "cpu"


def test_record_measurement_writes_the_result_with_its_provenance(tmp_path, capsys):
    import torch

    from sklearn_mln.toolkit import record_measurement

    threads = torch.get_num_threads()
    seen = {}

    def measure():
        seen["threads"] = torch.get_num_threads()
        return {"rows": [1.5]}

    torch.set_num_threads(2)  # record_measurement runs it at one
    try:
        result = record_measurement(
            measure, lambda r: f"| x |\n|---|\n| {r['rows'][0]} |", tmp_path / "speed", seed=7
        )
    finally:
        torch.set_num_threads(threads)
    assert seen["threads"] == 1
    written = json.loads((tmp_path / "speed.json").read_text())
    assert written == result and written["rows"] == [1.5]
    assert set(REQUIRED_KEYS) <= set(written["provenance"])
    assert written["provenance"]["seed"] == 7 and written["provenance"]["wall_seconds"] >= 0
    assert (tmp_path / "speed.md").read_text() == "| x |\n|---|\n| 1.5 |\n"
    assert "| 1.5 |" in capsys.readouterr().out
