"""The `bayesgmm` command: help, bad input (one line, exit 2, nothing half-written) and the
outputs of `fit` and `sweep` against the Python API.  The end-to-end study run (sampler
included) is in test_study.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesgmm as bg
from bayesgmm import report
from bayesgmm.cli import build_parser, main
from bayesgmm.covariance import STRUCTURES
from bayesgmm.spec import load_spec
from tests.test_spec import line_of

COMMANDS = ["fit", "select", "sample", "compare", "sweep", "run", "demo"]

SPEC = """\
name = "small"
seed = 3
[data]
path = "data.csv"
[model]
n_components = 2
[sensitivity]
grid = {{ shrinkage = [0.01, 1.0] }}
power_scaling = false
{extra}
"""


@pytest.fixture
def csv(tmp_path):
    X = bg.load_dataset("faithful")
    X.to_csv(tmp_path / "data.csv", index=False)
    return tmp_path / "data.csv"


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_command_has_help(capsys):
    for command in [None, *COMMANDS]:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"] if command else ["--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: bayesgmm")
        assert command is None or "--seed" in out and "--json" in out


def test_module_and_entry_point_run():
    script = Path(sys.executable).with_name("bayesgmm")  # the installed console script
    assert script.exists(), f"{script} is not installed (pip install -e .)"
    for cmd in ([sys.executable, "-m", "bayesgmm", "--help"], [str(script), "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert out.startswith("usage: bayesgmm") and all(c in out for c in COMMANDS)


# ---------------------------------------------------------------------- bad input
def bad_inputs(tmp_path, csv):
    """(arguments, words the one-line message must contain) for each kind of bad input."""
    text = SPEC.format(extra="")
    cases = {}
    (tmp_path / "bad.toml").write_text(text.replace("[model]", "[model"))
    cases["malformed TOML"] = (["run", tmp_path / "bad.toml"], ["bad.toml:5", "malformed TOML"])
    (tmp_path / "unknown.toml").write_text(text.replace("n_components = 2",
                                                        "n_components = 2\nstructure = 'full'"))
    cases["unknown key"] = (["run", tmp_path / "unknown.toml"],
                            ["unknown.toml:7", "unknown key 'structure'"])
    cases["missing spec"] = (["run", tmp_path / "none.toml"], ["none.toml", "not found"])
    cases["missing data"] = (["compare", tmp_path / "none.csv", "-k", "2"],
                             ["none.csv", "not found"])
    cases["unknown column"] = (["compare", csv, "-k", "2", "--columns", "eruptions,wait"],
                               ["no column(s) ['wait']", "'waiting'"])
    cases["K > N"] = (["compare", csv, "-k", "500"], ["n_components=500", "272 rows"])
    frame = pd.read_csv(csv).astype(object)
    frame.loc[4, "waiting"] = "about 80"
    frame.to_csv(tmp_path / "text.csv", index=False)
    cases["non-numeric"] = (["compare", tmp_path / "text.csv", "-k", "2"],
                            ["'waiting'", "non-numeric value 'about 80'", "line 6"])
    frame = pd.read_csv(csv)
    frame.loc[9, "eruptions"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    cases["missing value"] = (["compare", tmp_path / "gap.csv", "-k", "2"],
                              ["'eruptions'", "1 missing value", "line 11"])
    located = {  # a problem found after parsing, pointed at the spec line named by `needle`
        "K > N in a spec": ("k.toml", ("n_components = 2", "n_components = 400"),
                            "n_components", "[model]", "n_components=400"),
        "unknown column in a spec": ("col.toml", ('path = "data.csv"',
                                                  'path = "data.csv"\ncolumns = ["wait"]'),
                                     "columns", "[data]", "['wait']"),
        "prior of the wrong K": ("alpha.toml", ("[sensitivity]", "[prior]\nconcentration = "
                                                "[1, 1, 1]\n[sensitivity]"),
                                 "[prior]", "[prior]", "length 3"),
    }
    for case, (name, change, needle, table, words) in located.items():
        spec_text = text.replace(*change)
        (tmp_path / name).write_text(spec_text)
        cases[case] = (["run", tmp_path / name],
                       [f"{name}:{line_of(spec_text, needle)}: {table}", words])
    return cases


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, csv, capsys):
    for name, (args, words) in bad_inputs(tmp_path, csv).items():
        before = set(tmp_path.iterdir())
        code, out, err = run_cli([*args, "--out", tmp_path / "report"], capsys)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bayesgmm: error: "), (name, err)
        assert "Traceback" not in err and out == ""
        for word in words:
            assert word in lines[0], (name, lines[0])
        assert set(tmp_path.iterdir()) == before, f"{name} left files behind"


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bayesgmm", "fit", str(tmp_path / "x.csv"),
                           "-k", "2", "--debug"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_usage_errors(capsys, csv):
    with pytest.raises(SystemExit) as info:
        main(["fit", str(csv), "-k", "two"])
    assert info.value.code == 2 and "'two' is not K or a range a-b" in capsys.readouterr().err
    code, _, err = run_cli(["fit", csv], capsys)
    assert code == 2 and "-k/--n-components is required" in err
    code, _, err = run_cli(["fit", csv, "-k", "2", "--out", "fit.txt"], capsys)
    assert code == 2 and ".nc or .npz or .json" in err
    code, _, err = run_cli(["run", csv], capsys)
    assert code == 2 and "SPEC must be a study spec" in err
    code, _, err = run_cli(["sweep", csv, "-k", "2"], capsys)
    assert code == 2 and "no sensitivity grid" in err
    with pytest.raises(SystemExit):
        main(["sweep", str(csv), "-k", "2", "--grid", "shrinkage"])
    assert "AXIS=v1,v2" in capsys.readouterr().err


# ---------------------------------------------------------------------- outputs vs the API
def api_fit(X, K=2, seed=0):
    return bg.fit_map(X, K, "full", prior=bg.default_prior(X, K, "full"),
                      tol=1e-10, max_iter=1000, random_state=seed)


def test_fit_prints_and_writes_the_api_estimate(tmp_path, csv, capsys):
    X = pd.read_csv(csv)
    fit = api_fit(X, seed=4)
    code, out, _ = run_cli(["fit", csv, "-k", "2", "--seed", "4", "--out",
                            tmp_path / "f.nc"], capsys)
    assert code == 0
    assert f"log posterior = {fit.log_posterior:.6f}" in out
    assert f"BIC = {fit.bic(X):.3f}" in out
    saved = xr.open_dataset(tmp_path / "f.nc")
    np.testing.assert_array_equal(saved["means"].values, fit.means)
    np.testing.assert_array_equal(saved["covariances"].values, fit.covariances)
    np.testing.assert_array_equal(saved["prior_scale"].values, fit.prior.scale)
    assert saved.attrs["log_posterior"] == fit.log_posterior
    saved.close()
    np.testing.assert_array_equal(bg.load(tmp_path / "f.nc").predict_proba(X),
                                  fit.predict_proba(X))
    code, out, _ = run_cli(["fit", csv, "-k", "2", "--seed", "4", "--json", "--out",
                            tmp_path / "f.json"], capsys)
    printed = json.loads(out)
    from_file = xr.Dataset.from_dict(json.loads((tmp_path / "f.json").read_text()))
    np.testing.assert_array_equal(from_file["weights"].values, fit.weights)
    np.testing.assert_array_equal(np.array(printed["fit"]["data_vars"]["weights"]["data"]),
                                  fit.weights)
    assert printed["bic"] == fit.bic(X)


def test_fit_chooses_k_by_bic(csv, capsys):
    code, out, _ = run_cli(["fit", csv, "-k", "1", "2", "3", "--json"], capsys)
    table = pd.DataFrame(json.loads(out)["selection"]).set_index("n_components")
    X = pd.read_csv(csv)
    bics = {K: api_fit(X, K).bic(X) for K in (1, 2, 3)}
    np.testing.assert_allclose(table["bic"], [bics[1], bics[2], bics[3]], rtol=1e-12)
    assert table["selected"].idxmax() == min(bics, key=bics.get) == 2


def test_quiet_prints_nothing(csv, capsys):
    code, out, err = run_cli(["fit", csv, "-k", "2", "--quiet"], capsys)
    assert code == 0 and out == "" and err == ""


def test_sweep_report_equals_the_api(tmp_path, csv, capsys):
    (tmp_path / "s.toml").write_text(SPEC.format(extra=""))
    code, out, _ = run_cli(["sweep", tmp_path / "s.toml", "--out", tmp_path / "r", "--json",
                            "--grid", "shrinkage=0.01,1", "--grid", "scale=0.5,2"], capsys)
    assert code == 0
    files = set(json.loads(out)["files"])
    assert {"README.md", "spec.toml", "provenance.json", "em_fit.nc", "em_fit.json",
            "sensitivity/sweep.nc", "sensitivity/sweep_summary.csv",
            "sensitivity/sweep_summary.md", "sensitivity/sweep_weights.png"} <= files
    X = pd.read_csv(csv)
    fit = api_fit(X, seed=3)
    sweep = bg.prior_sweep(X, 2, "full", fit.prior, {"shrinkage": [0.01, 1.0],
                                                      "scale": [0.5, 2.0]},
                           base_fit=fit, tol=1e-10, max_iter=1000, random_state=3,
                           progress=False)  # the spec's [em]: n_init left to the default
    saved = xr.open_dataset(tmp_path / "r" / "sensitivity" / "sweep.nc")
    for var in ("weights", "means", "covariances", "log_posterior"):
        np.testing.assert_array_equal(saved[var].values, sweep[var].values)
    saved.close()
    spec = load_spec(tmp_path / "r" / "spec.toml")  # the effective spec, re-runnable
    assert spec.sensitivity.grid == {"shrinkage": (0.01, 1.0), "scale": (0.5, 2.0)}
    assert spec.seed == 3


def test_reports_replace_reports_but_nothing_else(tmp_path, csv, capsys, monkeypatch):
    args = ["sweep", csv, "-k", "2", "--grid", "dof=4,8", "--quiet", "--out", tmp_path / "r"]
    assert run_cli(args, capsys)[0] == 0
    first = (tmp_path / "r" / "provenance.json").read_text()
    # a failure while writing leaves the earlier report untouched and no staging folder
    monkeypatch.setattr(report, "_write_sensitivity", lambda *a: 1 / 0)
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "ZeroDivisionError" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "r" / "provenance.json").read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "r"]
    monkeypatch.undo()
    assert run_cli([*args[:-2], "--seed", "1", "--out", tmp_path / "r"], capsys)[0] == 0
    assert json.loads((tmp_path / "r" / "provenance.json").read_text())["seed"] == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = run_cli([*args[:-1], tmp_path / "mine"], capsys)
    assert code == 2 and "is not a report bayesgmm wrote" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_parser_lists_every_command():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert sorted(choices) == sorted(COMMANDS)


def test_bundled_data_sets():
    faithful = bg.load_dataset("faithful")
    iris = bg.load_dataset("iris", features_only=False)
    assert faithful.shape == (272, 2) and iris.shape == (150, 5)
    assert np.isclose(faithful["waiting"].mean(), 70.8970588235294)


@pytest.mark.slow
def test_sample_writes_the_posterior(tmp_path, csv, capsys):
    code, out, _ = run_cli(["sample", csv, "-k", "2", "--draws", "30", "--tune", "30",
                            "--chains", "1", "--json", "--out", tmp_path / "post.nc"], capsys)
    assert code == 0
    printed = json.loads(out)
    import arviz as az

    idata = az.from_netcdf(tmp_path / "post.nc")
    assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 30
    assert {"log_likelihood", "log_prior", "observed_data"} <= set(idata.groups())
    means = {row["index"]: row["mean"] for row in printed["summary"]}
    assert means["weights[0]"] == pytest.approx(
        float(idata.posterior["weights"].isel(component=0).mean()), abs=1e-3)  # az rounds
    assert set(printed["sampler_health"]) >= {"divergences", "max_rhat"}


def test_select_compares_every_structure_and_k(capsys, tmp_path):
    """`bayesgmm select DATA -k 1-4`: every structure by default (as mclust), the chosen model
    is select_model's, and --plot writes the BIC figure."""
    import json as json_module

    import bayesgmm as bg

    plot = tmp_path / "bic.png"
    code, out, err = run_cli(["select", "faithful", "-k", "1-4", "--plot", str(plot),
                              "--json", "--seed", "0"], capsys)
    assert code == 0, err
    data = json_module.loads(out)
    assert len(data["table"]) == 4 * len(STRUCTURES)
    assert {row["covariance"] for row in data["table"]} == set(STRUCTURES)
    expected = bg.select_model(bg.load_dataset("faithful"), range(1, 5), random_state=0)
    chosen = [row for row in data["table"] if row["selected"]]
    assert [(r["n_components"], r["covariance"]) for r in chosen] == [
        (expected.best.n_components, expected.best.covariance_type)]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as info:
        main(["select", "faithful", "-k", "9-1"])
    assert info.value.code == 2 and "'9-1' is not K or a range" in capsys.readouterr().err


def test_a_spec_with_candidate_structures_reports_the_selection(capsys, tmp_path):
    spec = tmp_path / "choose.toml"
    spec.write_text('name = "choose"\nseed = 3\n[data]\ndataset = "faithful"\n[model]\n'
                    'n_components = [1, 2, 3]\ncovariance = ["full", "tied"]\n')
    code, _, err = run_cli(["run", str(spec), "--out", str(tmp_path / "rep"), "--quiet"], capsys)
    assert code == 0, err
    report = tmp_path / "rep"
    for name in ("model_selection.md", "model_selection.csv", "model_selection.png"):
        assert (report / name).is_file()
    table = pd.read_csv(report / "model_selection.csv")
    assert len(table) == 6 and table.selected.sum() == 1
    expected = bg.select_model(bg.load_dataset("faithful"), [1, 2, 3], ["full", "tied"],
                               tol=1e-10, random_state=3)
    chosen = table[table.selected].iloc[0]
    assert (chosen.n_components, chosen.covariance) == (expected.best.n_components,
                                                        expected.best.covariance_type)
    assert "![model selection](model_selection.png)" in (report / "README.md").read_text()
