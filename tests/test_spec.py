"""Study specs: every shipped spec parses, and every kind of mistake is reported with the file,
the line and the key."""

from importlib import resources
from pathlib import Path

import pytest

from bayesgmm.spec import SpecError, load_spec, parse_spec

MODELS = Path(__file__).resolve().parents[1] / "models"
SPECS = sorted(MODELS.glob("*.toml"))

MINIMAL = """\
name = "t"
[data]
dataset = "faithful"
[model]
n_components = 2
[sampler]
draws = 100
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle`` (found independently of the
    parser's own lookup)."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_promised_specs_are_shipped():
    names = {p.name for p in SPECS}
    assert {"old_faithful.toml", "old_faithful_k3.toml", "iris.toml"} <= names
    assert any(load_spec(p).sensitivity is not None and load_spec(p).sensitivity.grid
               for p in SPECS), "at least one sensitivity study"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_parses_and_round_trips(path):
    spec = load_spec(path)
    assert spec.name == path.stem and spec.description
    again = parse_spec(spec.to_toml(), "<round trip>")
    assert again == spec


def test_specific_contents():
    faithful = load_spec(MODELS / "old_faithful.toml")
    assert faithful.model.n_components == (2,) and faithful.model.covariance == ("full",)
    assert faithful.sampler is not None and faithful.sensitivity.power_scaling
    assert load_spec(MODELS / "iris.toml").model.n_components == (3,)
    assert load_spec(MODELS / "old_faithful_k3.toml").model.n_components == (3,)


def test_the_demo_spec_bundled_in_the_package_is_models_old_faithful():
    bundled = resources.files("bayesgmm.data").joinpath("old_faithful.toml").read_text()
    assert bundled == (MODELS / "old_faithful.toml").read_text()


def test_defaults_and_optional_tables():
    spec = parse_spec(MINIMAL.replace("[sampler]\ndraws = 100\n", ""))
    assert spec.sampler is None and spec.sensitivity is None
    assert spec.em.init == "auto" and spec.em.n_init is None
    assert spec.prior.style == "default" and spec.seed == 0


def test_candidate_ks_and_relative_data_path(tmp_path):
    text = MINIMAL.replace('dataset = "faithful"', 'path = "sub/x.csv"').replace(
        "n_components = 2", "n_components = [1, 2, 3]")
    (tmp_path / "s.toml").write_text(text)
    spec = load_spec(tmp_path / "s.toml")
    assert spec.model.n_components == (1, 2, 3)
    assert spec.data.path == tmp_path / "sub" / "x.csv"


@pytest.mark.parametrize("change, needle, words", [
    (("draws = 100", "draw = 100"), "draw = 100", ["[sampler]", "unknown key 'draw'",
                                                   "did you mean 'draws'"]),
    (("draws = 100", 'draws = "100"'), "draws =", ["[sampler] draws", "integer", "'100'"]),
    (("draws = 100", "draws = 0"), "draws =", ["draws", "≥ 1", "0"]),
    (("draws = 100", "draws = true"), "draws =", ["draws", "integer", "True"]),
    (('name = "t"', 'nmae = "t"'), "nmae", ["unknown key 'nmae'", "did you mean 'name'"]),
    (("n_components = 2", 'covariance = "ful"\nn_components = 2'), "covariance",
     ["[model] covariance", "'full'", "'ful'"]),
    (("n_components = 2", "n_components = [2, 2]"), "n_components", ["repeat"]),
    (("n_components = 2", "n_components = [2, 0]"), "n_components", ["integers ≥ 1"]),
    (('dataset = "faithful"', 'dataset = "geyser"'), "dataset", ["faithful", "'geyser'"]),
    (("[sampler]\ndraws = 100", "[sampler]\ntarget_accept = 1.5"), "target_accept",
     ["target_accept", "(0, 1)"]),
    (("[sampler]\ndraws = 100", "[sensitivity]\ngrid = { shrink = [1.0] }"), "grid =",
     ["unknown grid axis 'shrink'", "did you mean 'shrinkage'"]),
    (("[sampler]\ndraws = 100", "[sensitivity]\ngrid = { dof = [] }"), "grid =",
     ["values for dof"]),
    (("[sampler]\ndraws = 100", '[prior]\nstyle = "none"\n[sampler]'), "style",
     ["'none'", "[sampler] needs a proper prior"]),
    (("[sampler]\ndraws = 100", "[prior]\ndof = -1"), "dof =", ["[prior] dof", "-1"]),
    (("[model]\nn_components = 2", "[model]\ncovariance = 'full'"), "[model]",
     ["n_components is required"]),
    (('dataset = "faithful"', 'dataset = "faithful"\npath = "x.csv"'), "[data]",
     ["exactly one of dataset", "path"]),
    (('name = "t"', 'name = "t"\nem = 3'), "em = 3", ["expected a table [em]"]),
])
def test_errors_name_file_line_and_key(change, needle, words):
    text = MINIMAL.replace(*change)
    assert text != MINIMAL
    with pytest.raises(SpecError) as info:
        parse_spec(text, "study.toml")
    message = str(info.value)
    assert message.startswith(f"study.toml:{line_of(text, needle)}: "), message
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_sub_table_form_of_the_grid():
    text = MINIMAL + "[sensitivity.grid]\nshrinkage = [0.1, 1.0]\ndof = 'x'\n"
    with pytest.raises(SpecError, match=rf"^s.toml:{line_of(text, '[sensitivity.grid]')}: "):
        parse_spec(text, "s.toml")
    spec = parse_spec(text.replace("dof = 'x'", "dof = [4.0, 8.0]"), "s.toml")
    assert spec.sensitivity.grid == {"shrinkage": (0.1, 1.0), "dof": (4.0, 8.0)}


def test_missing_tables_and_malformed_toml():
    with pytest.raises(SpecError, match=r"^s.toml: missing the \[model\] table"):
        parse_spec('[data]\ndataset = "iris"\n', "s.toml")
    bad = MINIMAL.replace("[sampler]", "[sampler")
    with pytest.raises(SpecError, match=rf"^s.toml:{line_of(bad, '[sampler')}: malformed TOML"):
        parse_spec(bad, "s.toml")
    with pytest.raises(SpecError, match="malformed TOML"):
        parse_spec('name = "unterminated\n', "s.toml")


def test_overrides_are_validated_like_the_file():
    spec = parse_spec(MINIMAL, "s.toml", {"seed": 3, "sampler": {"chains": 2}})
    assert spec.seed == 3 and spec.sampler.chains == 2 and spec.sampler.draws == 100
    with pytest.raises(SpecError, match="chains"):
        parse_spec(MINIMAL, "s.toml", {"sampler": {"chains": 0}})


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_spec(tmp_path / "nope.toml")
    (tmp_path / "b.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="not a text file"):
        load_spec(tmp_path / "b.toml")


def test_the_schema_table_documents_every_key():
    from dataclasses import fields

    from bayesgmm import spec as spec_module

    readme = (MODELS / "README.md").read_text()
    for table, cls in spec_module._SECTIONS.items():
        assert f"**`[{table}]`**" in readme
        for f in fields(cls):
            assert f"`{f.name}`" in readme, (table, f.name)
    for key in spec_module._TOP:
        assert f"`{key}`" in readme
