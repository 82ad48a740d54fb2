import subprocess
import sys

import numpy as np

import bayesgmm as bg
from bayesgmm.cli import main


def test_demo_prints_the_fit(capsys):
    assert main(["demo", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    fit = bg.fit_map(bg.load_dataset("faithful"), 2, random_state=0, tol=1e-10)
    assert f"log posterior = {fit.log_posterior:.6f}" in out
    for k in range(2):
        assert f"weight {fit.weights[k]:.4f}" in out
    assert "converged=True" in out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "bayesgmm", "demo"], capture_output=True,
                         text=True, check=True).stdout
    assert "Old Faithful" in out and "component 1" in out


def test_bundled_data_sets():
    faithful = bg.load_dataset("faithful")
    iris = bg.load_dataset("iris", features_only=False)
    assert faithful.shape == (272, 2) and iris.shape == (150, 5)
    assert np.isclose(faithful["waiting"].mean(), 70.8970588235294)
