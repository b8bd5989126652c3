"""MLNEvolver on a Dask cluster through joblib: same result, data sent once, worker loss."""

import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from joblib import parallel_config

import sklearn_mln
from sklearn_mln import MLNEvolver
from sklearn_mln._evolution._parallel import _active_dask_backend

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def tiny(tiny_evolver):
    """The tiny settings of tests/conftest.py, 3 generations."""
    return {**tiny_evolver, "n_generations": 3}


@pytest.fixture(scope="module")
def reference(tiny, pool):
    return MLNEvolver(**tiny, n_jobs=1).fit(*pool)


@pytest.fixture
def cluster():
    """Two single-threaded worker processes; each test gets fresh ones."""
    root = str(Path(sklearn_mln.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
            env={"PYTHONPATH": path},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


def _same_result(a, b):
    np.testing.assert_array_equal(a.meta_loss_.get_flat_params(), b.meta_loss_.get_flat_params())
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a.history_]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b.history_]


@pytest.mark.timeout(120)
def test_dask_gives_the_same_loss_and_sends_validation_data_once(tiny, cluster, pool, reference):
    _, client = cluster
    original, scattered = client.scatter, []

    def counting_scatter(data, *args, **kwargs):
        scattered.append(data)
        return original(data, *args, **kwargs)

    client.scatter = counting_scatter
    assert _active_dask_backend() is None
    with parallel_config(backend="dask"):
        assert _active_dask_backend() is not None  # tasks then keep the workers' threads
        evo = MLNEvolver(**tiny).fit(*pool)
    _same_result(evo, reference)
    n_val = 150  # validation_size=0.5 of 300 samples
    sent = [
        d
        for d in scattered
        for d in (d if isinstance(d, (list, tuple)) else [d])
        if isinstance(d, np.ndarray) and d.shape == (n_val, 64)
    ]
    assert len(sent) == 1  # once per fit, not once per generation or per task
    # each task kept its worker's single torch thread (Dask sets OMP_NUM_THREADS=1)
    assert set(client.run(lambda: __import__("torch").get_num_threads()).values()) == {1}


class _Rescheduled(distributed.diagnostics.plugin.SchedulerPlugin):
    """Counts tasks that left 'processing' other than by finishing (their worker died)."""

    def __init__(self):
        self.count = 0

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing" and finish not in ("memory", "erred"):
            self.count += 1


@pytest.mark.timeout(180)
def test_killing_a_worker_mid_generation_changes_nothing(tiny, cluster, pool, reference):
    cluster, client = cluster
    rescheduled = _Rescheduled()
    cluster.scheduler.add_plugin(rescheduled, name="rescheduled")
    pids = client.run(os.getpid)
    outcome = {}

    def fit():
        try:
            with parallel_config(backend="dask"):
                outcome["evo"] = MLNEvolver(**tiny).fit(*pool)
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=fit)
    thread.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and thread.is_alive():
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        if busy:
            victim = busy[0]
            os.kill(pids[victim], signal.SIGKILL)  # mid-task: the worker is still importing
        time.sleep(0.005)
    thread.join(timeout=150)
    assert victim is not None, "no task was ever seen running"
    assert not thread.is_alive(), "fit did not finish after a worker was killed"
    assert "error" not in outcome, outcome.get("error")
    assert rescheduled.count >= 1  # the killed worker's task ran again elsewhere
    _same_result(outcome["evo"], reference)
