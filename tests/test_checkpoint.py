"""Checkpoint and resume: SIGKILL mid-run, refusal of foreign or tampered checkpoints."""

import ast
import dataclasses
import io
import json
import os
import pickle
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import SLOWED_EVOLUTION, generations_in, sigkill_after_generations

import sklearn_mln
import sklearn_mln._evolution._checkpoint as checkpoint_module
import sklearn_mln._evolution._evolver as evolver_module
import sklearn_mln._utils._archive as archive_module
from sklearn_mln import MLNEvolver
from sklearn_mln._evolution._checkpoint import load_checkpoint, save_checkpoint
from sklearn_mln._evolution._strategy import CMAStrategy, _CMAPickler, unpickle_es


@pytest.fixture(scope="module")
def cfg(tiny_evolver):
    """The tiny evolution settings, 6 generations."""
    return {**tiny_evolver, "n_generations": 6}


@pytest.fixture(scope="module")
def reference(cfg, pool):
    return MLNEvolver(**cfg).fit(*pool)


def _strip(evo):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in evo.history_]


def _assert_same(a, b):
    np.testing.assert_array_equal(a.meta_loss_.get_flat_params(), b.meta_loss_.get_flat_params())
    assert _strip(a) == _strip(b)
    assert a.best_fitness_ == b.best_fitness_


_CHILD = (
    SLOWED_EVOLUTION
    + """
from sklearn_mln import MLNEvolver
from sklearn_mln.datasets import load_digits_images
X, y = load_digits_images(return_X_y=True)
MLNEvolver(**{cfg!r}, checkpoint_path=sys.argv[1]).fit(X[:300].reshape(300, -1), y[:300])
"""
)


@pytest.mark.timeout(120)
def test_sigkill_mid_run_then_resume_matches_uninterrupted(cfg, tmp_path, pool, reference):
    path = tmp_path / "run.ckpt"
    root = str(Path(sklearn_mln.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-c", _CHILD.format(cfg=cfg), str(path)]
    assert sigkill_after_generations(command, env, path, 2) == -signal.SIGKILL
    done = generations_in(path)  # the file is whole even though the writer was killed
    assert 2 <= done < cfg["n_generations"]
    resumed = MLNEvolver(**cfg, checkpoint_path=path).fit(*pool)
    _assert_same(resumed, reference)
    assert [h["seconds"] for h in resumed.history_] != [h["seconds"] for h in reference.history_]


def test_extend_refit_and_max_time_resume(cfg, tmp_path, pool, reference, monkeypatch):
    path = tmp_path / "run.ckpt"
    # stopped by max_time after one generation: the next fit continues the run
    first = MLNEvolver(**cfg, max_time=1e-9, checkpoint_path=path).fit(*pool)
    assert first.stop_reason_ == "max_time" and generations_in(path) == 1
    # then run 3 of the 6 generations, then extend to 6 with other execution settings
    MLNEvolver(**{**cfg, "n_generations": 3}, checkpoint_path=str(path)).fit(*pool)
    assert generations_in(path) == 3
    extended = MLNEvolver(**cfg, n_jobs=2, checkpoint_path=path).fit(*pool)
    _assert_same(extended, reference)
    assert os.listdir(tmp_path) == ["run.ckpt"]  # no temporary files left
    # a finished run is kept; fitting again only repeats the final re-evaluation
    calls = []
    evaluate = evolver_module.evaluate_population

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(evolver_module, "evaluate_population", counting)
    again = MLNEvolver(**cfg, checkpoint_path=path).fit(*pool)
    _assert_same(again, reference)
    assert len(calls) == 1 and again.stop_reason_ == "n_generations"
    with pytest.raises(ValueError, match="already holds 6 generations"):
        MLNEvolver(**{**cfg, "n_generations": 5}, checkpoint_path=path).fit(*pool)


def test_checkpoint_of_other_data_or_parameters_is_refused(cfg, tmp_path, pool):
    X, y = pool
    path = tmp_path / "run.ckpt"
    MLNEvolver(**{**cfg, "n_generations": 1}, checkpoint_path=path).fit(X, y)
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
            MLNEvolver(**{**cfg, "n_generations": 1, **params}, checkpoint_path=path).fit(X_, y_)


def test_random_state_none_resumes_its_own_run(cfg, tmp_path, pool):
    path = tmp_path / "run.ckpt"
    params = {**cfg, "random_state": None, "checkpoint_path": path}
    first = MLNEvolver(**{**params, "n_generations": 2}).fit(*pool)
    again = MLNEvolver(**{**params, "n_generations": 2}).fit(*pool)
    _assert_same(first, again)


def test_failed_write_keeps_the_previous_checkpoint(cfg, tmp_path, pool, monkeypatch):
    path = tmp_path / "run.ckpt"
    MLNEvolver(**{**cfg, "n_generations": 1}, checkpoint_path=path).fit(*pool)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(archive_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        MLNEvolver(**{**cfg, "n_generations": 2}, checkpoint_path=path).fit(*pool)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.ckpt"]


# ----------------------------------------------------------------------------- trust model
@pytest.fixture
def checkpoint(cfg, tmp_path, pool):
    path = tmp_path / "run.ckpt"
    MLNEvolver(**{**cfg, "n_generations": 2}, checkpoint_path=path).fit(*pool)
    return path


def _run_id(path):
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(str(archive["header"]))["fingerprint"]


def _rewrite_cma(path, pool, blob):
    """Replace the pickled pycma state of a valid checkpoint."""
    state = load_checkpoint(path, _run_id(path))
    strategy = dataclasses.replace(state.strategy, es_pickle=blob)
    save_checkpoint(path, _run_id(path), dataclasses.replace(state, strategy=strategy))


def _tampered_es(path, edit):
    with np.load(path, allow_pickle=False) as archive:
        es = unpickle_es(archive["cma"].tobytes())
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


def test_malicious_checkpoint_is_refused_without_running_code(cfg, tmp_path, checkpoint, pool):
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
        _rewrite_cma(path, pool, blob)
        with pytest.raises(ValueError, match=match):
            MLNEvolver(**{**cfg, "n_generations": 2}, checkpoint_path=path).fit(*pool)
        assert not marker.exists()


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda b: b[: len(b) // 2], "not a readable"),
        (lambda b: b"", "not a readable"),
        (lambda b: b"not a zip at all" * 10, "not a readable"),
    ],
)
def test_corrupt_checkpoint_is_a_clear_error(cfg, checkpoint, pool, corrupt, match):
    path = checkpoint
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=match):
        MLNEvolver(**{**cfg, "n_generations": 2}, checkpoint_path=path).fit(*pool)


def test_wrong_version_or_format_is_refused(cfg, checkpoint, pool):
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
            MLNEvolver(**{**cfg, "n_generations": 2}, checkpoint_path=bad).fit(*pool)


# ----------------------------------------------------------------------------- the state
def test_state_round_trips_through_the_file(cfg, tmp_path, pool):
    path = tmp_path / "run.ckpt"
    MLNEvolver(**{**cfg, "n_generations": 3}, checkpoint_path=path).fit(*pool)
    state = load_checkpoint(path, _run_id(path))
    assert state.generation == 3 and state.stop_reason is None
    save_checkpoint(tmp_path / "again.ckpt", _run_id(path), state)
    again = load_checkpoint(tmp_path / "again.ckpt", _run_id(path))
    assert again.strategy.es_pickle == state.strategy.es_pickle
    for a, b in [
        (again.setup_rng_state, state.setup_rng_state),
        (again.rng_state, state.rng_state),
        (again.strategy.rng_state, state.strategy.rng_state),
    ]:
        assert a[0] == b[0] and a[2:] == b[2:]
        np.testing.assert_array_equal(a[1], b[1])
    assert again.history == state.history
    for a, b in [(again.shortlist.generation_best, state.shortlist.generation_best)] + [
        (again.shortlist.top, state.shortlist.top)
    ]:
        assert [t[:-1] for t in a] == [t[:-1] for t in b]
        np.testing.assert_array_equal([t[-1] for t in a], [t[-1] for t in b])


def test_format_version_1_layout_is_kept(checkpoint):
    """Checkpoints written before the state was a value keep loading: same layout."""
    with np.load(checkpoint, allow_pickle=False) as archive:
        names = set(archive.files)
        header = json.loads(str(archive["header"]))
    assert names == {
        "header", "generation_best", "top", "cma", "initial_rng_keys", "rng_keys", "cma_rng_keys"
    }  # fmt: skip
    assert set(header) == {
        "format", "format_version", "package_version", "cma_version", "fingerprint", "history",
        "generation_best", "top", "rng", "cma_stop",
    }  # fmt: skip
    assert header["format_version"] == checkpoint_module.FORMAT_VERSION == 1
    assert set(header["rng"]) == {"initial_rng", "rng", "cma_rng"}


def test_checkpoint_module_uses_no_private_attribute():
    """The strategy is saved through CMAStrategy.state / from_state only."""
    tree = ast.parse(Path(checkpoint_module.__file__).read_text())
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    private = {a for a in attributes if a.startswith("_") and not a.startswith("__")}
    assert not private and "es" not in attributes


@pytest.mark.parametrize("n", [5, 300])  # from 300 dimensions pycma adapts sigma by TPA
def test_strategy_continues_exactly_from_its_state(n):
    args = (np.zeros(n), 0.3, 6, 7)
    strategy = CMAStrategy(*args)
    for _ in range(3):
        x = strategy.ask()
        strategy.tell(x, -np.sum(x**2, axis=1))
    state = strategy.state()
    restored = CMAStrategy.from_state(state, *args)
    np.testing.assert_array_equal(restored.ask(), strategy.ask())
    with pytest.raises(ValueError, match="does not match this problem"):
        CMAStrategy.from_state(state, np.zeros(n + 1), *args[1:])
    with pytest.raises(ValueError, match="options differ"):
        CMAStrategy.from_state(state, np.zeros(n), 0.3, 8, 7)


def test_resume_above_300_dimensions(cfg, tmp_path, pool):
    params = {**cfg, "structure": "joint", "hidden_sizes": (16,), "n_generations": 2}
    straight = MLNEvolver(**params).fit(*pool)
    assert straight.meta_loss_.n_params >= 300
    path = tmp_path / "run.ckpt"
    MLNEvolver(**{**params, "n_generations": 1}, checkpoint_path=path).fit(*pool)
    _assert_same(MLNEvolver(**params, checkpoint_path=path).fit(*pool), straight)


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_long_run_keeps_memory_flat(cfg, tmp_path, pool, monkeypatch):
    """RSS after generation 50 within 10 % of generation 5 (checkpointing every generation)."""
    rss = []
    evaluate = evolver_module.evaluate_population

    def measured(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        rss.append(_rss_mib())
        return result

    monkeypatch.setattr(evolver_module, "evaluate_population", measured)
    params = {**cfg, "n_generations": 50, "checkpoint_path": tmp_path / "run.ckpt"}
    MLNEvolver(**params).fit(*pool)
    after_5, after_50 = rss[4], rss[49]
    print(f"RSS after generation 5: {after_5:.1f} MiB, after generation 50: {after_50:.1f} MiB")
    assert after_50 <= 1.10 * after_5


def test_result_files_hold_the_numbers_and_the_table(tmp_path):
    from sklearn_mln.toolkit import write_result_files

    result = {"rows": [{"x": 1.5}], "provenance": {"seed": 0}}
    write_result_files(tmp_path / "sub" / "speed", result, "| x |\n|---|\n| 1.5 |")
    assert json.loads((tmp_path / "sub" / "speed.json").read_text()) == result
    assert (tmp_path / "sub" / "speed.md").read_text() == "| x |\n|---|\n| 1.5 |\n"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["speed.json", "speed.md"]
