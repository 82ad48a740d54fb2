"""Files and folders: written atomically, replaced only when bayesgmm wrote them, read back only
after validation (issue: data safety)."""

import errno
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import bayesgmm as bg
from bayesgmm import _io
from bayesgmm._io import MARKER, OutputFolderError, check_output_folder, publish_folder

SUFFIXES = [".nc", ".npz", ".json"]


@pytest.fixture(scope="module")
def fit():
    return bg.fit_map(bg.load_dataset("faithful"), 2, random_state=0)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs (root only): writes beyond it fail with ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _fill(folder: Path) -> None:
    """Fill the file system holding ``folder`` until a write fails."""
    with open(folder / "ballast", "wb", buffering=0) as fh:
        for size in (4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


def _same_fit(a, b):
    for name in ("weights", "means", "covariances", "history"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.log_posterior, a.n_iter, a.feature_names) == (b.log_posterior, b.n_iter,
                                                            b.feature_names)


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    _io.atomic_write(target, "old")
    _io.atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_io._umask()


def test_a_write_failing_half_way_leaves_the_earlier_file(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"precious")
    real_write = os.write

    def half_then_fail(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.EIO, "injected failure")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(OSError, match="could not write .*a.bin.*earlier file there is unchanged"):
        _io.atomic_write(target, b"x" * 10_000)
    monkeypatch.undo()
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_on_a_full_disk_fails_cleanly_and_keeps_the_earlier_fit(fit, tiny_disk, suffix):
    path = tiny_disk / f"fit{suffix}"
    fit.save(path)
    _fill(tiny_disk)
    bigger = bg.fit_map(np.repeat(bg.load_dataset("faithful").to_numpy(), 3, 0), 2,
                        random_state=0, tol=0, max_iter=3000, warn_convergence=False)
    with pytest.raises(OSError, match="No space left|could not write"):
        bigger.save(path)
    _same_fit(bg.load(path), fit)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["ballast", f"fit{suffix}"]


def test_a_netcdf_save_on_a_full_disk_does_not_crash_the_process(tmp_path):
    # before: h5py/HDF5 wrote straight to the file and the process died with SIGSEGV
    if os.geteuid() != 0:
        pytest.skip("needs root for a tmpfs")
    code = f"""
import os, subprocess, sys, numpy as np, bayesgmm as bg
mount = {str(tmp_path / 'disk')!r}
os.mkdir(mount)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mount], check=True)
try:
    with open(os.path.join(mount, "ballast"), "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"0" * 4096)
        except OSError:
            pass
    fit = bg.fit_map(bg.load_dataset("faithful"), 2, random_state=0)
    try:
        fit.save(os.path.join(mount, "fit.nc"))
    except OSError as exc:
        print("OSError", exc.errno)
finally:
    subprocess.run(["umount", mount], check=True)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["OSError", str(errno.ENOSPC)]


# ----------------------------------------------------------------------------- formats
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_format_round_trips_exactly(fit, tmp_path, suffix):
    back = bg.load(fit.save(tmp_path / f"fit{suffix}"))
    _same_fit(back, fit)
    np.testing.assert_array_equal(back.prior.scale, fit.prior.scale)


def test_the_format_follows_the_extension(fit, tmp_path):
    fit.save(tmp_path / "f.json")
    json.loads((tmp_path / "f.json").read_text())  # JSON, not a zip under a .json name
    fit.save(tmp_path / "f.npz")
    assert zipfile.is_zipfile(tmp_path / "f.npz")
    fit.save(tmp_path / "f.nc")
    assert (tmp_path / "f.nc").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"unknown extension '\.pkl'; use one of \.nc, \.npz"):
        fit.save(tmp_path / "f.pkl")
    with pytest.raises(ValueError, match=r"unknown extension '\.txt'"):
        bg.load(tmp_path / "f.txt")
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        bg.load(tmp_path / "nope.nc")


def test_the_json_written_by_the_command_line_loads(tmp_path):
    from bayesgmm.cli import main

    assert main(["fit", "faithful", "-k", "2", "--quiet", "--out", str(tmp_path / "f.json")]) == 0
    fit = bg.load(tmp_path / "f.json")
    assert fit.n_components == 2 and fit.feature_names == ("eruptions", "waiting")


def _npz_record(path):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def _write_npz(path, meta, arrays):
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


@pytest.mark.parametrize("change, message", [
    (lambda m, a: a.update(means=np.where(np.arange(4).reshape(2, 2) == 1, np.nan, a["means"])),
     "means has NaN or infinite entries"),
    (lambda m, a: a.update(weights=np.array([0.2, 0.3, 0.5])),
     r"means must have shape \(K, d\) = \(3, d\)"),
    (lambda m, a: a.update(weights=a["weights"] * 12), "weights must be non-negative and sum to 1"),
    (lambda m, a: m.update(n_iter="12"), "n_iter must be an integer"),
    (lambda m, a: a.update(covariances=a["covariances"] * [[1, 1], [0.5, 1]]), "symmetric"),
    (lambda m, a: a.update(covariances=-a["covariances"]), "not positive definite"),
    (lambda m, a: m.update(covariance="VXV"), "not a covariance structure"),
    (lambda m, a: m.update(format="bayesgmm.MixtureFit/9"), "format version '9'"),
    (lambda m, a: m.pop("format"), "no format marker"),
    (lambda m, a: m.update(extra=1), r"unexpected \['extra'\]"),
    (lambda m, a: a.pop("history"), r"missing \['history'\]"),
    (lambda m, a: a.update(prior_dof=np.array(-3.0)), "its prior is invalid: dof"),
    (lambda m, a: m.update(log_posterior=1.0), "is not the last history entry"),
    (lambda m, a: a.update(weights=np.array(["a", "b"])), "weights must be numeric"),
])
def test_load_validates_every_part(fit, tmp_path, change, message):
    path = fit.save(tmp_path / "fit.npz")
    meta, arrays = _npz_record(path)
    change(meta, arrays)
    _write_npz(path, meta, arrays)
    with pytest.raises(ValueError, match=message) as info:
        bg.load(path)
    assert str(path) in str(info.value)


# h5netcdf leaves a half-built File object on a corrupt file, whose __del__ complains
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_corrupted_files_always_give_a_value_error(fit, tmp_path, suffix):
    """Truncation at many offsets, flipped bytes, empty and foreign files: every case is one
    ValueError naming the file, never another exception or a crash."""
    good = fit.save(tmp_path / f"good{suffix}").read_bytes()
    rng = np.random.default_rng(0)
    variants = [good[:cut] for cut in np.unique(np.linspace(0, len(good) - 1, 40).astype(int))]
    for _ in range(60):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[pos] ^= int(rng.integers(1, 256))
        variants.append(bytes(data))
    variants += [b"", b"not a fit at all", os.urandom(300)]
    path = tmp_path / f"bad{suffix}"
    outcomes = set()
    for data in variants:
        path.write_bytes(data)
        try:
            back = bg.load(path)
        except ValueError as exc:
            assert str(path) in str(exc)
            outcomes.add("error")
        else:  # a flip in padding or metadata that did not matter: the fit must still be valid
            assert np.all(np.isfinite(back.means)) and abs(back.weights.sum() - 1) < 1e-9
            outcomes.add("loaded")
    assert "error" in outcomes


def test_a_netcdf_fit_is_sealed_and_any_damage_is_named(fit, tmp_path):
    """A flipped byte anywhere before the seal is reported as damage before HDF5 parses the
    file (some corrupted HDF5 files hang its reader); the sealed file is plain netCDF to
    other readers."""
    path = fit.save(tmp_path / "fit.nc")
    good = path.read_bytes()
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["means"].values, fit.means)
    payload = len(good) - len(b"\nbayesgmm-sha256:") - 65
    for pos in np.random.default_rng(1).integers(0, payload, size=60):
        data = bytearray(good)
        data[pos] ^= 0x5A
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError, match=r"fit\.nc is damaged: its SHA-256 checksum does "
                                             r"not match .* restore it from a copy or refit"):
            bg.load(path)


def test_loading_never_unpickles(fit, tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"format": "x"}], dtype=object))  # an object array: a pickle
    with pytest.raises(ValueError, match="evil.npz is not a readable"):
        bg.load(path)


def test_version_one_files_written_by_the_earlier_release_load(fit, tmp_path):
    meta, arrays = fit._record()
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    (tmp_path / "old.npz").write_bytes(buffer.getvalue())
    _same_fit(bg.load(tmp_path / "old.npz"), fit)


# ----------------------------------------------------------------------------- folders
def _build(files):
    def build(writer):
        for name, text in files.items():
            writer.write(name, text)
    return build


def test_a_folder_is_published_with_a_marker_and_honours_the_umask(tmp_path):
    out = publish_folder(tmp_path / "rep", _build({"a.txt": "1"}), {"what": "test"})
    marker = json.loads((out / MARKER).read_text())
    provenance = json.loads((out / "provenance.json").read_text())
    assert marker["token"] == provenance["report_token"]
    assert sorted(marker["files"]) == ["a.txt", "provenance.json"]
    assert out.stat().st_mode & 0o777 == 0o777 & ~_io._umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_only_a_folder_bayesgmm_wrote_is_replaced(tmp_path):
    folder = publish_folder(tmp_path / "rep", _build({"a.txt": "1"}), {})
    publish_folder(folder, _build({"b.txt": "2"}), {})
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "b.txt", "provenance.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]

    (folder / "data.csv").write_text("the user's own file")
    with pytest.raises(OutputFolderError, match=r"holds 1 file\(s\) bayesgmm did not write "
                                                r"\(data.csv\); nothing was changed"):
        publish_folder(folder, _build({"c.txt": "3"}), {})
    assert (folder / "data.csv").read_text() == "the user's own file"


@pytest.mark.parametrize("setup, message", [
    (lambda f: (f / "provenance.json").write_text("{}"), "no bayesgmm report marker"),
    (lambda f: ((f / "provenance.json").write_text('{"report_token": "a"}'),
                (f / MARKER).write_text('{"format": "bayesgmm.report/1", "token": "b"}')),
     "do not match"),
    (lambda f: (f / "notes.txt").write_text("x"), "no bayesgmm report marker"),
])
def test_look_alike_folders_are_refused_untouched(tmp_path, setup, message):
    folder = tmp_path / "rep"
    folder.mkdir()
    setup(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(OutputFolderError, match=message):
        check_output_folder(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_symlink_or_a_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputFolderError, match="symbolic link"):
        check_output_folder(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        check_output_folder(tmp_path / "file")


def test_a_failure_while_building_leaves_the_earlier_folder(tmp_path):
    folder = publish_folder(tmp_path / "rep", _build({"a.txt": "1"}), {})

    def half_then_fail(writer):
        writer.write("b.txt", "2")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish_folder(folder, half_then_fail, {})
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "a.txt", "provenance.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_without_an_atomic_exchange_an_interrupted_replacement_is_restored(tmp_path, monkeypatch):
    folder = publish_folder(tmp_path / "rep", _build({"a.txt": "old"}), {})
    monkeypatch.setattr(_io, "_exchange", lambda a, b: False)
    real_rename, calls = os.rename, []

    def interrupted_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the two renames
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", interrupted_second_rename)
    with pytest.raises(KeyboardInterrupt):
        publish_folder(folder, _build({"a.txt": "new"}), {})
    monkeypatch.setattr(os, "rename", real_rename)
    assert not folder.exists()
    with pytest.warns(UserWarning, match="restored the earlier report"):
        check_output_folder(folder)
    assert (folder / "a.txt").read_text() == "old"
    publish_folder(folder, _build({"a.txt": "new"}), {})  # the two-rename path completes
    assert (folder / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_the_exchange_keeps_a_report_at_the_target_at_every_instant(tmp_path, monkeypatch):
    folder = publish_folder(tmp_path / "rep", _build({"a.txt": "old"}), {})
    seen = []
    real_remove = _io._remove_owned

    def observe(path):  # runs right after the exchange, before the old report is deleted
        seen.append((folder / "a.txt").read_text())
        real_remove(path)

    monkeypatch.setattr(_io, "_remove_owned", observe)
    publish_folder(folder, _build({"a.txt": "new"}), {})
    assert seen == ["new"]


def test_report_writing_on_a_full_disk_keeps_the_earlier_report(tiny_disk):
    folder = publish_folder(tiny_disk / "rep", _build({"a.txt": "old"}), {})
    _fill(tiny_disk)
    with pytest.raises(OSError):
        publish_folder(folder, _build({"big.txt": "x" * 200_000}), {})
    assert (folder / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["ballast", "rep"]
