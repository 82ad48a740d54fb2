"""Ctrl-C during sampling: never a traceback, never a truncated posterior passed off as complete,
never a lost report (real SIGINTs, to a real subprocess and to this process)."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import bayesgmm as bg
from bayesgmm import SamplingInterrupted

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")]

SPEC = """\
name = "interrupt"
seed = 1
[data]
path = "data.csv"
[model]
n_components = 2
"""
SAMPLER = "[sampler]\ndraws = 200000\ntune = 20\nchains = 2\n"


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("sampler", ["nuts", "gibbs"])
def test_sigint_to_bayesgmm_run_during_sampling(tmp_path, sampler):
    bg.load_dataset("faithful").to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "fit.toml").write_text(SPEC)
    (tmp_path / "sample.toml").write_text(SPEC + SAMPLER + f'method = "{sampler}"\n')
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "bayesgmm", "run"]
    subprocess.run([*cmd, str(tmp_path / "fit.toml"), "--out", str(report), "--quiet"],
                   check=True)
    before = _tree(report)

    proc = subprocess.Popen([*cmd, str(tmp_path / "sample.toml"), "--out", str(report)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines, sampling = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(("bayesgmm: compiled and initialised",
                                "bayesgmm: Gibbs: nothing to compile")):
                sampling.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert sampling.wait(timeout=900), "".join(lines)
    time.sleep(1.0)  # well inside the 200 000 draws
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    reader.join(timeout=10)
    text = "".join(lines)
    assert "Traceback" not in text and "SystemError" not in text, text
    assert lines[-1].strip() == ("bayesgmm: interrupted; nothing was written (an earlier report "
                                 "or file is unchanged)")
    assert _tree(report) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "fit.toml", "report",
                                                         "sample.toml"]


class _InterruptOnceSampling(logging.Handler):
    """Sends this process a real SIGINT shortly after the sampler reports that it draws."""

    def emit(self, record):
        if "sampling" in record.getMessage():
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()


@pytest.fixture
def interrupt_during_sampling():
    logger = logging.getLogger("bayesgmm")
    handler, level = _InterruptOnceSampling(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("sampler", ["nuts", "gibbs"])
def test_the_api_raises_or_marks_partial_draws(interrupt_during_sampling, sampler):
    X = np.random.default_rng(0).normal(size=(40, 1))
    kwargs = dict(draws=100000, tune=10, chains=2, random_seed=0, progressbar=False,
                  sampler=sampler)
    with pytest.raises(SamplingInterrupted, match=r"interrupted after \d+ of 100000 draws"):
        bg.sample_posterior(X, 1, "full", **kwargs)
    idata = bg.sample_posterior(X, 1, "full", allow_partial=True, **kwargs)
    post = idata.posterior
    assert post.attrs["partial"] == 1 and post.attrs["draws_requested"] == 100000
    assert 0 < post.sizes["draw"] < 100000
    fit = bg.fit_map(X, 1, "full", random_state=0)
    assert bg.compare(fit, idata).summary().startswith("PARTIAL RUN: sampling was interrupted")
