"""The GPU path: the same results on a CUDA device as on the CPU, up to float rounding.

Skipped where torch sees no CUDA device (CI has none); run them on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

import numpy as np
import pytest
import torch

from sklearn_mln import ClassicalLoss, MLNClassifier, MLNEvolver, load_pretrained
from sklearn_mln._classifier._nets import architecture_factory
from sklearn_mln._utils._provenance import provenance, provenance_lines
from sklearn_mln.benchmark import shared_tasks
from sklearn_mln.benchmark._tuning import Setting, score_settings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("architecture", ["cnn", "mlp"])
def test_inner_loop_scores_tasks_as_on_the_cpu(digits, architecture):
    X, y = digits
    X = X if architecture == "cnn" else X.reshape(len(X), -1)
    tasks = shared_tasks(X, y, 5, 6, np.random.RandomState(0))
    factory = architecture_factory(architecture, X.shape[1:], 10)
    modules = {
        ("cross_entropy", ()): ClassicalLoss("cross_entropy"),
        ("label_smoothing", (("smoothing", 0.9),)): ClassicalLoss("label_smoothing", smoothing=0.9),
        ("fashion-mnist", ()): load_pretrained("fashion-mnist"),
    }
    settings = [Setting(name, params, 0.1, 100) for name, params in modules]
    on = {
        d: score_settings(settings, modules, factory, tasks, X, device=d) for d in ("cpu", "cuda")
    }
    for s in settings:
        cpu, gpu = on["cpu"].accuracy[s], on["cuda"].accuracy[s]
        assert cpu.shape == gpu.shape == (6,)
        # a few of the ~1700 validation images may flip class under other float kernels
        np.testing.assert_allclose(gpu, cpu, atol=0.01)
        assert cpu.mean() > 0.5


def test_classifier_fits_and_predicts_on_the_gpu(digits):
    X, y = digits
    fitted = {
        d: MLNClassifier(device=d, random_state=0).fit(X[:200], y[:200]) for d in ("cpu", "cuda")
    }
    assert next(fitted["cuda"].module_.parameters()).device.type == "cuda"
    proba = fitted["cuda"].predict_proba(X[200:])
    assert isinstance(proba, np.ndarray) and proba.dtype == np.float64
    same = fitted["cuda"].predict(X[200:]) == fitted["cpu"].predict(X[200:])
    assert same.mean() > 0.98
    assert fitted["cuda"].score(X[200:], y[200:]) > 0.7


def test_evolver_evolves_on_the_gpu(digits, tiny_evolver):
    X, y = digits
    fitted = {
        d: MLNEvolver(**tiny_evolver, device=d).fit(X[:300], y[:300]) for d in ("cpu", "cuda")
    }
    assert len(fitted["cuda"].history_) == tiny_evolver["n_generations"]
    assert abs(fitted["cuda"].best_fitness_ - fitted["cpu"].best_fitness_) < 0.05
    assert fitted["cuda"].meta_loss_.metadata["device"].startswith("cuda:0 (")
    # the evolved loss is a plain CPU module, usable anywhere
    assert all(p.device.type == "cpu" for p in fitted["cuda"].meta_loss_.parameters())


def test_provenance_names_the_gpu():
    record = provenance(device="cuda")
    assert record["device"] == f"cuda:0 ({torch.cuda.get_device_name(0)})"
    assert f"- device: {record['device']}" in provenance_lines(record)
