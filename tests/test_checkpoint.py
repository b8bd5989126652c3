"""Checkpoint and resume: SIGKILL mid-run, refusal of foreign or tampered checkpoints."""

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sklearn_mln
import sklearn_mln._evolver as evolver_module
from sklearn_mln import MLNEvolver
from sklearn_mln._checkpoint import (
    _CMAPickler,
    _CMAUnpickler,
    load_checkpoint,
    save_checkpoint,
)
from sklearn_mln.datasets import load_digits_images

CFG = dict(
    n_shots=3,
    n_tasks=2,
    popsize=4,
    n_generations=6,
    inner_steps=10,
    n_reeval_tasks=2,
    hidden_sizes=(4,),
    random_state=0,
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:300].reshape(300, -1), y[:300]


@pytest.fixture(scope="module")
def reference(digits):
    return MLNEvolver(**CFG).fit(*digits)


def _strip(evo):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in evo.history_]


def _assert_same(a, b):
    np.testing.assert_array_equal(a.meta_loss_.get_flat_params(), b.meta_loss_.get_flat_params())
    assert _strip(a) == _strip(b)
    assert a.best_fitness_ == b.best_fitness_


def _generations_in(path):
    with np.load(path, allow_pickle=False) as archive:
        return len(json.loads(str(archive["header"]))["history"])


_CHILD = """
import sys, time
import sklearn_mln._evolver as evolver
from sklearn_mln import MLNEvolver
from sklearn_mln.datasets import load_digits_images

evaluate = evolver.evaluate_population
def slowed(*args, **kwargs):  # slower generations, same numbers
    time.sleep(0.4)
    return evaluate(*args, **kwargs)
evolver.evaluate_population = slowed
X, y = load_digits_images(return_X_y=True)
MLNEvolver(**{cfg!r}, checkpoint_path=sys.argv[1]).fit(X[:300].reshape(300, -1), y[:300])
"""


@pytest.mark.timeout(120)
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, digits, reference):
    path = tmp_path / "run.ckpt"
    root = str(Path(sklearn_mln.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(cfg=CFG), str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not (path.exists() and _generations_in(path) >= 2):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    done = _generations_in(path)  # the file is whole even though the writer was killed
    assert 2 <= done < CFG["n_generations"]
    resumed = MLNEvolver(**CFG, checkpoint_path=path).fit(*digits)
    _assert_same(resumed, reference)
    assert [h["seconds"] for h in resumed.history_] != [h["seconds"] for h in reference.history_]


def test_extend_refit_and_max_time_resume(tmp_path, digits, reference, monkeypatch):
    path = tmp_path / "run.ckpt"
    # stopped by max_time after one generation: the next fit continues the run
    first = MLNEvolver(**CFG, max_time=1e-9, checkpoint_path=path).fit(*digits)
    assert first.stop_reason_ == "max_time" and _generations_in(path) == 1
    # then run 3 of the 6 generations, then extend to 6 with other execution settings
    MLNEvolver(**{**CFG, "n_generations": 3}, checkpoint_path=str(path)).fit(*digits)
    assert _generations_in(path) == 3
    extended = MLNEvolver(**CFG, n_jobs=2, checkpoint_path=path).fit(*digits)
    _assert_same(extended, reference)
    assert os.listdir(tmp_path) == ["run.ckpt"]  # no temporary files left
    # a finished run is kept; fitting again only repeats the final re-evaluation
    calls = []
    evaluate = evolver_module.evaluate_population

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(evolver_module, "evaluate_population", counting)
    again = MLNEvolver(**CFG, checkpoint_path=path).fit(*digits)
    _assert_same(again, reference)
    assert len(calls) == 1 and again.stop_reason_ == "n_generations"
    with pytest.raises(ValueError, match="already holds 6 generations"):
        MLNEvolver(**{**CFG, "n_generations": 5}, checkpoint_path=path).fit(*digits)


def test_checkpoint_of_other_data_or_parameters_is_refused(tmp_path, digits):
    X, y = digits
    path = tmp_path / "run.ckpt"
    MLNEvolver(**{**CFG, "n_generations": 1}, checkpoint_path=path).fit(X, y)
    X_other = X.copy()
    X_other[0, 0] += 1
    for X_, y_, params in [
        (X_other, y, {}),
        (X, np.where(y == 0, 10, y), {}),
        (X, y, {"sigma0": 0.1}),
        (X, y, {"random_state": 1}),
        (X, y, {"hidden_sizes": (5,)}),
        (X, y, {"init": "label_smoothing"}),
    ]:
        with pytest.raises(ValueError, match="other data or parameters"):
            MLNEvolver(**{**CFG, "n_generations": 1, **params}, checkpoint_path=path).fit(X_, y_)


def test_random_state_none_resumes_its_own_run(tmp_path, digits):
    path = tmp_path / "run.ckpt"
    params = {**CFG, "random_state": None, "checkpoint_path": path}
    first = MLNEvolver(**{**params, "n_generations": 2}).fit(*digits)
    again = MLNEvolver(**{**params, "n_generations": 2}).fit(*digits)
    _assert_same(first, again)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, digits, monkeypatch):
    path = tmp_path / "run.ckpt"
    MLNEvolver(**{**CFG, "n_generations": 1}, checkpoint_path=path).fit(*digits)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(sklearn_mln._meta_loss.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        MLNEvolver(**{**CFG, "n_generations": 2}, checkpoint_path=path).fit(*digits)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.ckpt"]


# ----------------------------------------------------------------------------- trust model
@pytest.fixture
def checkpoint(tmp_path, digits):
    path = tmp_path / "run.ckpt"
    MLNEvolver(**{**CFG, "n_generations": 2}, checkpoint_path=path).fit(*digits)
    return path


def _rewrite_cma(path, digits, blob):
    """Replace the pickled pycma state of a valid checkpoint."""
    with np.load(path, allow_pickle=False) as archive:
        run_id = json.loads(str(archive["header"]))["fingerprint"]
    state = load_checkpoint(path, run_id)
    state.cma_pickle = blob
    save_checkpoint(path, state)


def _tampered_es(path, edit):
    with np.load(path, allow_pickle=False) as archive:
        es = _CMAUnpickler(io.BytesIO(archive["cma"].tobytes())).load()
    edit(es)
    buffer = io.BytesIO()
    _CMAPickler(buffer, protocol=4).dump(es)
    return buffer.getvalue()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _CallsCMAConstructor:
    def __reduce__(self):
        import cma

        return (cma.CMAEvolutionStrategy, ([0.0, 0.0], 1.0, {"popsize": "4"}))


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path, checkpoint, digits):
    import cma

    path = checkpoint
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    pickle.loads(payload)  # control: plain pickle runs the payload
    assert marker.exists()
    marker.unlink()
    cases = [
        (payload, "refusing to load global io.open"),
        (pickle.dumps(_CallsCMAConstructor()), "refusing to load a call of"),
        (pickle.dumps(np.random.RandomState(0)), "refusing to load global"),
        (
            _tampered_es(path, lambda es: es.opts.__setitem__("tolfun", "__import__('os')")),
            "options differ",
        ),
        (
            _tampered_es(path, lambda es: setattr(es.sm, "randn", cma.CMAEvolutionStrategy)),
            "refusing the CMA-ES state",
        ),
        (b"\x80\x04garbage", "corrupt CMA-ES state"),
    ]
    for blob, match in cases:
        _rewrite_cma(path, digits, blob)
        with pytest.raises(ValueError, match=match):
            MLNEvolver(**{**CFG, "n_generations": 2}, checkpoint_path=path).fit(*digits)
        assert not marker.exists()


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda b: b[: len(b) // 2], "not a readable"),
        (lambda b: b"", "not a readable"),
        (lambda b: b"not a zip at all" * 10, "not a readable"),
    ],
)
def test_corrupt_checkpoint_is_a_clear_error(checkpoint, digits, corrupt, match):
    path = checkpoint
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=match):
        MLNEvolver(**{**CFG, "n_generations": 2}, checkpoint_path=path).fit(*digits)


def test_wrong_version_or_format_is_refused(checkpoint, digits):
    path = checkpoint
    for key, value, match in [
        ("format_version", 99, "format version 99"),
        ("format", "something-else", "is not a sklearn-mln-checkpoint"),
        ("cma_version", "0.0.1", "pycma 0.0.1"),
    ]:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        header = json.loads(str(arrays["header"]))
        arrays["header"] = np.array(json.dumps({**header, key: value}))
        bad = path.with_name("bad.ckpt")
        with open(bad, "wb") as fh:
            np.savez(fh, **arrays)
        with pytest.raises(ValueError, match=match):
            MLNEvolver(**{**CFG, "n_generations": 2}, checkpoint_path=bad).fit(*digits)


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_long_run_keeps_memory_flat(tmp_path, digits, monkeypatch):
    """RSS after generation 50 within 10 % of generation 5 (checkpointing every generation)."""
    rss = []
    evaluate = evolver_module.evaluate_population

    def measured(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        rss.append(_rss_mib())
        return result

    monkeypatch.setattr(evolver_module, "evaluate_population", measured)
    params = {**CFG, "n_generations": 50, "checkpoint_path": tmp_path / "run.ckpt"}
    MLNEvolver(**params).fit(*digits)
    after_5, after_50 = rss[4], rss[49]
    print(f"RSS after generation 5: {after_5:.1f} MiB, after generation 50: {after_50:.1f} MiB")
    assert after_50 <= 1.10 * after_5
