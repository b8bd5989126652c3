import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import REPOSITORY, load_script

from sklearn_mln import MetaLossNetwork, MLNClassifier, load_pretrained
from sklearn_mln._utils._provenance import REQUIRED_KEYS
from sklearn_mln.pretrained import PRETRAINED

PROVENANCE = {"command", "dataset", "date", "package_version", "params", "reevaluated_fitness"}


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_loss_loads_with_provenance(name):
    loss = load_pretrained(name)
    assert isinstance(loss, MetaLossNetwork)
    assert PROVENANCE <= set(loss.metadata)
    assert "regenerate" in loss.metadata  # the command that evolved it
    logits, y = torch.randn(6, 10), torch.arange(6)
    value = loss(logits, y)
    assert torch.isfinite(value) and value >= 0


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_classifier_accepts_pretrained_name(name, digits):
    X, y = digits
    clf = MLNClassifier(meta_loss=name, max_epochs=100, random_state=0).fit(X[:100], y[:100])
    np.testing.assert_array_equal(
        clf.loss_.get_flat_params(), load_pretrained(name).get_flat_params()
    )
    assert clf.score(X[100:], y[100:]) > 0.6


def test_a_shipped_loss_is_a_fixed_function_until_asked_to_train():
    loss = load_pretrained("fashion-mnist")
    logits = torch.randn(6, 10, requires_grad=True)
    loss(logits, torch.arange(6)).backward()
    assert logits.grad is not None and torch.any(logits.grad != 0)
    assert not loss.theta.requires_grad and loss.theta.grad is None
    loss.requires_grad_()
    loss(logits, torch.arange(6)).backward()
    assert loss.theta.grad is not None and torch.any(loss.theta.grad != 0)


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="Unknown pretrained"):
        load_pretrained("imagenet")


# --------------------------------------------------------------------------- reproduction
ROOT = REPOSITORY
REPORT = ROOT / "benchmarks" / "results" / "evolution" / "fashion-mnist-reproduction.json"
#: sklearn_mln.pretrained's tolerances for the re-evaluated fitness: on the machine that
#: made the file, and on any machine (float kernels differ between processors)
SAME_MACHINE_TOLERANCE = 1e-6
#: one prediction of the re-evaluation's 16 tasks x 3000 validation images
ONE_PREDICTION = 1 / 48_000
ANY_MACHINE_TOLERANCE = 10 * ONE_PREDICTION
SECOND_MACHINE = " on AMD EPYC, AVX2, no AVX-512"


def _regenerate_script():
    return load_script("benchmarks/tools/regenerate_pretrained.py")


def test_reproduction_report_is_about_the_shipped_weights():
    report = json.loads(REPORT.read_text())
    sha = _regenerate_script().theta_sha256(load_pretrained("fashion-mnist").get_flat_params())
    assert report
    for name, section in report.items():
        assert section["shipped_theta_sha256"] == sha, name
        assert set(REQUIRED_KEYS) <= set(section["provenance"]), name
        check = name.split(" on ")[0]  # " on LABEL": repeated on another machine
        assert section["code_commit"] and check.endswith("@" + section["code_commit"][:7])


def _short(x: float, digits: int) -> str:
    """``7.5e-9`` (as prose writes it), not Python's ``7.5e-09``."""
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def test_reproduction_report_says_what_the_docs_say():
    page = (Path(__file__).resolve().parents[1] / "docs/user_guide/reproducing.rst").read_text()
    page = " ".join(page.split())  # line breaks do not matter
    report = json.loads(REPORT.read_text())
    evolved_with = report["reevaluate@ffcb023"]["comparison"]
    assert evolved_with["bit_for_bit"]
    assert report["generations@ffcb023"]["comparison"]["first_mismatch"] is None
    current = report["reevaluate@a4f7902"]["comparison"]
    assert 0 < abs(current["difference"]) <= SAME_MACHINE_TOLERANCE
    assert _short(abs(current["difference"]), 1) in page
    assert f"within {_short(SAME_MACHINE_TOLERANCE, 0)}" in page
    for commit, predictions in (("ffcb023", 2), ("153ed8b", 4)):
        difference = abs(report[f"reevaluate@{commit}{SECOND_MACHINE}"]["comparison"]["difference"])
        assert round(difference / ONE_PREDICTION) == predictions, commit
        assert _short(difference, 1) in page, commit
    assert "within 10 predictions (2.1e-4" in page
    assert report["generations@a4f7902"]["comparison"]["first_mismatch"] == 0
    full = report["full@ffcb023"]["comparison"]
    assert full["same_weights"] and full["first_mismatch"] is None
    assert len(full["generations"]) == load_pretrained("fashion-mnist").metadata["generations"]
    assert full["reevaluated_fitness"] == full["recorded_fitness"]
    assert "bit for bit" in page and "62 generations" in page


def test_the_shipped_file_is_the_regenerated_one():
    metadata = load_pretrained("fashion-mnist").metadata
    assert metadata["same_weights_as_shipped"] and metadata["code_commit"].startswith("ffcb023")
    assert metadata["regenerate"] == metadata["provenance"]["command"]
    assert "regenerate_pretrained.py full" in metadata["regenerate"]


def test_log_parsing_reads_every_generation():
    script = _regenerate_script()
    metadata = load_pretrained("fashion-mnist").metadata
    logged = script.logged_generations((ROOT / metadata["log"]).read_text(encoding="utf-8"))
    assert len(logged) == metadata["generations"]
    assert logged[0] == {"best": "0.7225", "mean": "0.6460", "sigma": "0.0467", "fails": "0"}
    record = {"best_fitness": 0.72249, "mean_fitness": 0.64599, "sigma": 0.04669, "n_failures": 0}
    assert script.as_logged(record) == logged[0]


@pytest.mark.slow
def test_shipped_loss_reevaluates_to_its_recorded_fitness():
    """The claim of sklearn_mln.pretrained, checked with this version (a few minutes)."""
    script = _regenerate_script()
    try:
        result = script.run("reevaluate", 0, n_jobs=-1, output=None)
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    comparison = script.compare("reevaluate", result)
    assert abs(comparison["difference"]) <= ANY_MACHINE_TOLERANCE
