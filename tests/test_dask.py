"""MAP-EM on Dask arrays: the same fit as in memory (same start, same iterations, ≤ 1e-10),
on the threaded scheduler and on a real dask.distributed LocalCluster (processes, loopback)."""

import numpy as np
import pytest

import bayesgmm as bg
from tests.conftest import STRUCTURES

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def faithful_array():
    return np.asarray(bg.load_dataset("faithful"))


def _start(X, covariance, prior):
    return bg.fit_map(X, 2, covariance, prior=prior, init="kmeans++", random_state=1,
                      max_iter=2, warn_convergence=False)


def _assert_same_fit(a, b, rtol=1e-10):
    assert a.n_iter == b.n_iter and a.converged == b.converged
    assert b.log_posterior == pytest.approx(a.log_posterior, rel=rtol)
    assert b.log_likelihood == pytest.approx(a.log_likelihood, rel=rtol)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("covariance", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("prior", ["default", None])
@pytest.mark.parametrize("weighted", [False, True])
def test_blocks_give_the_in_memory_fit(faithful_array, covariance, prior, weighted):
    X = faithful_array
    w = np.random.default_rng(0).uniform(0.5, 3.0, size=len(X)) if weighted else None
    start = _start(X, covariance, prior)
    in_memory = bg.fit_map(X, 2, covariance, prior=prior, init=start, sample_weight=w,
                           tol=1e-10)
    on_dask = bg.fit_map(da.from_array(X, chunks=(64, 2)), 2, covariance, prior=prior,
                         init=start, tol=1e-10,
                         sample_weight=None if w is None else da.from_array(w, chunks=50))
    _assert_same_fit(in_memory, on_dask)
    if prior is not None:  # the default prior from one pass of moments
        np.testing.assert_allclose(on_dask.prior.scale, in_memory.prior.scale, rtol=1e-12)
        np.testing.assert_allclose(on_dask.prior.mean, in_memory.prior.mean, rtol=1e-12)


@pytest.mark.parametrize("covariance", [s for s in STRUCTURES
                                        if s not in ("full", "tied", "diag", "spherical")])
@pytest.mark.parametrize("prior", ["default", None])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_other_structure_gives_the_in_memory_iterates(faithful_array, covariance, prior,
                                                            weighted):
    """mclust's other ten structures (their M-steps run on the client): the same 30 plain EM
    iterations from the same start as in memory (plain: SQUAREM's accept/reject decisions on
    rounding-level differences could shift a fixed iteration budget by one map)."""
    X = faithful_array
    w = np.random.default_rng(1).uniform(0.5, 3.0, size=len(X)) if weighted else None
    start = _start(X, covariance, prior)
    run = dict(prior=prior, init=start, tol=0, max_iter=30, acceleration=None,
               warn_convergence=False)
    in_memory = bg.fit_map(X, 2, covariance, sample_weight=w, **run)
    on_dask = bg.fit_map(da.from_array(X, chunks=(64, 2)), 2, covariance, **run,
                         sample_weight=None if w is None else da.from_array(w, chunks=50))
    _assert_same_fit(in_memory, on_dask)


def test_the_default_search_reaches_the_in_memory_mode(faithful_array):
    """The start is searched on a sample (here every row: N < 4 000), then EM on the blocks."""
    X = faithful_array
    on_dask = bg.fit_map(da.from_array(X, chunks=(100, 2)), 3, random_state=0)
    assert on_dask.log_posterior == pytest.approx(bg.fit_map(X, 3, random_state=0).log_posterior,
                                                  abs=1e-6)


def test_predictions_are_lazy_and_equal(faithful_array):
    X = faithful_array
    fit = bg.fit_map(X, 2, random_state=0)
    Xd = da.from_array(X, chunks=(50, 2))
    for method in ("predict", "predict_proba", "score_samples"):
        lazy = getattr(fit, method)(Xd)
        assert isinstance(lazy, da.Array)
        np.testing.assert_array_equal(lazy.compute(), getattr(fit, method)(X))


def test_bad_input_is_named(faithful_array):
    Xd = da.from_array(faithful_array, chunks=(50, 2))
    with pytest.raises(ValueError, match="not available for Dask arrays"):
        bg.fit_map(Xd, 2, init=np.ones((272, 2)) / 2)
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        bg.fit_map(Xd, 2, sample_weight=np.ones(5))
    sparse_weights = bg.adjust_prior(bg.default_prior(faithful_array, 2),
                                     {"concentration": 0.5})
    with pytest.raises(ValueError, match="MAP-EM needs concentration"):  # as in memory
        bg.fit_map(Xd, 2, prior=sparse_weights)


@pytest.mark.slow
def test_a_local_cluster_gives_the_same_fit():
    """A real distributed.LocalCluster (2 worker processes, loopback): data generated on the
    workers, the fit equal to the in-memory one from the same start, and the data never
    travel — what the workers send (to each other and to the client) during a default fit of
    16 MB of data is the 4 000-row sample for the start (64 kB) and the statistics. ≈ 15 s."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        rng = da.random.default_rng(7)
        labels = rng.integers(0, 2, size=40_000, chunks=5_000)
        X = rng.normal(size=(40_000, 2), chunks=(5_000, 2)) + 4.0 * labels[:, None]
        X = X.persist()
        local = X.compute()
        start = _start(local, "full", "default")
        on_cluster = bg.fit_map(X, 2, init=start, tol=1e-10)
        fit = bg.fit_map(local, 2, init=start, tol=1e-10)
        _assert_same_fit(fit, on_cluster, rtol=1e-9)
        labels_cluster = on_cluster.predict(X).compute()
        np.testing.assert_array_equal(labels_cluster, fit.predict(local))

        groups = rng.integers(0, 2, size=1_000_000, chunks=200_000)
        big = (rng.normal(size=(1_000_000, 2), chunks=(200_000, 2))
               + 4.0 * groups[:, None]).persist()
        distributed.wait(big)

        def sent(dask_worker):
            return dask_worker.transfer_outgoing_bytes_total

        client = distributed.get_client()
        before = sum(client.run(sent).values())
        fit = bg.fit_map(big, 2, random_state=0)
        moved = sum(client.run(sent).values()) - before
        # the sample (4 000 rows × 16 B) and, per EM-map evaluation and block, its statistics
        # (≈ 0.2 kB; 4 kB allowed with message overhead) — nothing that grows with N
        allowed = 4_000 * 16 + fit.n_iter * big.numblocks[0] * 4096
        assert moved < allowed < big.nbytes / 10, (moved, allowed, big.nbytes)

        # model selection's candidates spread over the cluster (X scattered once): the serial
        # table
        small = local[:3000]
        spread = bg.select_model(small, [1, 2, 3], ["full", "tied"], executor=client)
        serial = bg.select_model(small, [1, 2, 3], ["full", "tied"])
        np.testing.assert_array_equal(spread.table.log_posterior, serial.table.log_posterior)
        # a warm prior sweep's lattice, segments and exchange rounds too: the serial sweep
        grid = {"shrinkage": [0.01, 0.1, 1.0], "scale": [0.5, 1.0, 2.0]}
        spread = bg.prior_sweep(small, 2, grid=grid, progress=False, executor=client)
        serial = bg.prior_sweep(small, 2, grid=grid, progress=False)
        np.testing.assert_array_equal(spread.log_posterior, serial.log_posterior)


def test_model_selection_and_prior_sweeps_take_dask_arrays(faithful_array):
    """select_model and prior_sweep on a Dask array reach the in-memory tables (Old Faithful:
    the same modes, BIC/ICL computed blockwise)."""
    X = faithful_array
    Xd = da.from_array(X, chunks=(64, 2))
    on_dask = bg.select_model(Xd, [1, 2, 3], ["full", "tied"])
    in_memory = bg.select_model(X, [1, 2, 3], ["full", "tied"])
    np.testing.assert_allclose(on_dask.table.log_posterior, in_memory.table.log_posterior,
                               rtol=1e-9)
    np.testing.assert_allclose(on_dask.table.icl, in_memory.table.icl, rtol=1e-9)
    assert (on_dask.best.n_components, on_dask.best.covariance_type) == (3, "tied")
    grid = {"shrinkage": [0.01, 1.0], "scale": [0.5, 2.0]}
    sweep_dask = bg.prior_sweep(Xd, 2, grid=grid, progress=False)
    sweep = bg.prior_sweep(X, 2, grid=grid, progress=False)
    np.testing.assert_allclose(sweep_dask.log_posterior, sweep.log_posterior, rtol=1e-9)
    np.testing.assert_allclose(sweep_dask.bic, sweep.bic, rtol=1e-9)


@pytest.mark.slow
def test_a_worker_lost_mid_fit_does_not_change_the_answer():
    """A worker process killed during the EM iterations: Dask recomputes its blocks from their
    lineage on the restarted worker, and the fit completes with the in-memory answer (same
    start, a fixed number of iterations). ≈ 15 s."""
    import os
    import threading
    import time

    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        rng = da.random.default_rng(3)
        labels = rng.integers(0, 2, size=400_000, chunks=20_000)
        X = (rng.normal(size=(400_000, 2), chunks=(20_000, 2)) + 4.0 * labels[:, None]).persist()
        local = X.compute()
        start = _start(local[:2000], "full", "default")
        result = {}
        fitting = threading.Thread(target=lambda: result.setdefault("fit", bg.fit_map(
            X, 2, init=start, tol=0, max_iter=60, warn_convergence=False)))
        fitting.start()
        time.sleep(1.0)
        killed_mid_fit = fitting.is_alive()
        victim = next(iter(client.scheduler_info()["workers"]))
        with pytest.raises(Exception):  # the worker dies before it can answer
            client.run(lambda: os._exit(1), workers=[victim])
        fitting.join(timeout=600)
        assert killed_mid_fit and "fit" in result
        expected = bg.fit_map(local, 2, init=start, tol=0, max_iter=60, warn_convergence=False)
        _assert_same_fit(expected, result["fit"], rtol=1e-9)


@pytest.mark.slow
def test_the_readme_large_data_example_runs(tmp_path):
    """The README's "Large data" example, as a user would run it: a script on a fresh
    LocalCluster of 2 worker processes. ≈ 20 s."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Large data"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "large_data.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = [float(v) for v in re.findall(r"-?\d+\.\d+", done.stdout)]
    assert sorted(numbers[:4]) == pytest.approx([0.0, 0.0, 4.0, 4.0], abs=0.05), done.stdout
