"""Writing files and report folders without ever losing what was there (DESIGN §6).

Two mechanisms serve every writer in the package:

* :func:`atomic_write` puts bytes at a path through a temporary file beside it (flushed and
  fsynced, then :func:`os.replace`), so the target holds either its old or its new contents,
  never a truncated mix.  Serialisers produce bytes in memory first (netCDF included), so a full
  disk is an ``OSError`` from one ``write`` — not a crash inside a storage library.
* :func:`publish_folder` writes a folder (a report) into a staging sibling and moves it into
  place.  An existing folder is replaced only when bayesgmm can prove it wrote it: it carries the
  marker :data:`MARKER` whose token ``provenance.json`` also records, and it holds nothing the
  marker does not list.  The replacement is one ``renameat2(RENAME_EXCHANGE)`` where the system
  offers it (Linux), so the old or the new folder is at the target at every instant; elsewhere two
  renames with signals blocked, and an interrupted one is restored on the next run.

Created files and folders honour the umask.

Fit files in netCDF are *sealed* (:func:`seal`): a SHA-256 of the file follows its last byte,
where netCDF/HDF5 readers do not look, and :func:`unseal` checks it before any parser sees the
bytes — a damaged file is named as such, never parsed (HDF5 can hang on some corrupted files).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MARKER", "PROVENANCE", "OutputFolderError", "DamagedFileError", "atomic_write",
           "seal", "unseal", "FolderWriter", "check_output_folder", "publish_folder"]

#: the file that proves a folder was written by bayesgmm (JSON: format, token, files)
MARKER = ".bayesgmm-report.json"
#: the provenance file of a report; it records the marker's token too
PROVENANCE = "provenance.json"
_MARKER_FORMAT = "bayesgmm.report/1"
#: prefix of the staging and retired siblings of a folder being published
_SIBLING = ".bayesgmm-"


class OutputFolderError(ValueError):
    """An output folder cannot be written or replaced; the message says what is in the way."""


# ----------------------------------------------------------------------------- permissions
def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (and put it straight back)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the data itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- files
def atomic_write(path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is flushed, fsynced and then
    renamed over ``path`` (:func:`os.replace`); on any failure (a full disk, an interrupt) the
    temporary file is removed and ``path`` keeps its earlier contents.

    Parameters
    ----------
    path : str or Path
    data : bytes or str
        A str is encoded as UTF-8.

    Returns
    -------
    Path

    Raises
    ------
    OSError
        With the path and the reason; the earlier file is unchanged.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = memoryview(data).cast("B")
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{path} is a folder; give a file name")
    tmp = folder / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask())
    try:
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"could not write {path}: {exc.strerror or exc}; any "
                          "earlier file there is unchanged") from None
        raise
    _fsync_folder(folder)
    return path


def netcdf_bytes(dataset) -> bytes:
    """An xarray Dataset or DataTree as netCDF-4 bytes (built in memory with h5netcdf)."""
    buffer = io.BytesIO()
    dataset.to_netcdf(buffer, engine="h5netcdf")
    return buffer.getvalue()


class DamagedFileError(ValueError):
    """A sealed file whose checksum does not match its contents."""


#: a sealed file ends with this, the SHA-256 of every byte before it in hex, and a newline
_SEAL = b"\nbayesgmm-sha256:"
_SEAL_LENGTH = len(_SEAL) + 64 + 1


def seal(payload: bytes) -> bytes:
    """``payload`` followed by its SHA-256 (which :func:`unseal` checks)."""
    return payload + _SEAL + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n"


def unseal(raw: bytes) -> bytes:
    """The payload of a sealed file, after checking its checksum; the bytes of a file without
    a seal (written elsewhere, or truncated) as they are, for the parser to judge.

    Raises
    ------
    DamagedFileError
        If the file is sealed and its checksum does not match.
    """
    trailer = raw[-_SEAL_LENGTH:]
    if len(raw) < _SEAL_LENGTH or not (trailer.startswith(_SEAL) and trailer.endswith(b"\n")):
        return raw
    payload = raw[:-_SEAL_LENGTH]
    if hashlib.sha256(payload).hexdigest().encode("ascii") != trailer[len(_SEAL):-1]:
        raise DamagedFileError(
            "is damaged: its SHA-256 checksum does not match its contents (it changed after "
            "bayesgmm wrote it); restore it from a copy or refit")
    return payload


# ----------------------------------------------------------------------------- folders
class FolderWriter:
    """Writes the files of a folder being assembled, and records each one it writes.

    Every file goes through :meth:`write`; :attr:`files` (paths relative to the root) is what
    the ownership marker lists, so a folder's listing is exactly what bayesgmm wrote into it.
    """

    def __init__(self, root: Path, prefix: str = "", files: list | None = None):
        self.root, self.prefix = Path(root), prefix
        self.files = [] if files is None else files

    def sub(self, name: str) -> "FolderWriter":
        """A writer for the subfolder ``name`` (sharing this writer's record)."""
        (self.root / self.prefix / name).mkdir(exist_ok=True)
        return FolderWriter(self.root, f"{self.prefix}{name}/", self.files)

    def path(self, name: str) -> Path:
        return self.root / self.prefix / name

    def write(self, name: str, data: bytes | str) -> Path:
        target = self.path(name)
        if isinstance(data, str):
            data = data.encode("utf-8")
        with open(target, "wb") as fh:  # inside a private staging folder: no rename needed
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.files.append(self.prefix + name)
        return target

    def write_figure(self, name: str, figure, **kwargs) -> Path:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=Path(name).suffix.lstrip("."), **kwargs)
        return self.write(name, buffer.getvalue())

    def write_netcdf(self, name: str, dataset) -> Path:
        return self.write(name, netcdf_bytes(dataset))


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _ownership_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be proven a bayesgmm report folder (None when it can)."""
    marker = _read_json(folder / MARKER)
    if marker is None or marker.get("format") != _MARKER_FORMAT:
        return "it has no bayesgmm report marker"
    provenance = _read_json(folder / PROVENANCE) or {}
    token = marker.get("token")
    if not token or provenance.get("report_token") != token:
        return f"its marker and {PROVENANCE} do not match"
    listed = set(marker.get("files") or ()) | {MARKER}
    extra = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath).relative_to(folder)
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            rel = (base / name).as_posix()
            if entry.is_symlink() or (name in filenames and rel not in listed):
                extra.append(rel)
    if extra:
        shown = ", ".join(sorted(extra)[:3]) + (", …" if len(extra) > 3 else "")
        return f"it holds {len(extra)} file(s) bayesgmm did not write ({shown})"
    return None


def _siblings(folder: Path):
    return sorted(folder.parent.glob(f".{folder.name}{_SIBLING}*"))


def _restore_interrupted(folder: Path) -> None:
    """Put back a report retired by a replacement that was interrupted between its renames."""
    if folder.exists() or folder.is_symlink():
        return
    for sibling in _siblings(folder):
        if sibling.name.startswith(f".{folder.name}{_SIBLING}retired-") and \
                _ownership_problem(sibling) is None:
            os.rename(sibling, folder)
            warnings.warn(f"restored the earlier report {folder} from an interrupted "
                          "replacement", UserWarning, stacklevel=3)
            return


def check_output_folder(folder) -> Path:
    """Raise :class:`OutputFolderError` unless ``folder`` may receive a report.

    It may if it does not exist, is an empty folder, or is a report folder bayesgmm wrote (its
    marker's token matches its ``provenance.json`` and it holds only the files the marker lists).
    """
    folder = Path(folder)
    _restore_interrupted(folder)
    if folder.is_symlink():
        raise OutputFolderError(f"output {str(folder)!r} is a symbolic link; give a real folder")
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"output {str(folder)!r} is a file, not a folder; choose another "
                                "name")
    if folder.is_dir() and any(folder.iterdir()):
        problem = _ownership_problem(folder)
        if problem:
            raise OutputFolderError(
                f"output folder {str(folder)!r} is not empty and is not a report bayesgmm wrote: "
                f"{problem}; nothing was changed — choose another folder or move its contents")
    return folder


@contextmanager
def _signals_blocked():
    """Defer SIGINT/SIGTERM (where the platform allows) across a few system calls."""
    mask = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where that is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"could not move the new report into place: {os.strerror(err)}")


def _remove_owned(folder: Path) -> None:
    """Delete a folder bayesgmm can prove it wrote (or an empty one); leave anything else."""
    try:
        os.rmdir(folder)  # succeeds only for an empty folder (an empty target it replaced)
        return
    except OSError:
        pass
    if _ownership_problem(folder) is None:
        shutil.rmtree(folder, ignore_errors=True)


def publish_folder(folder, build, provenance: dict) -> Path:
    """Write a folder atomically: ``build(writer)`` fills a staging sibling, then it is moved
    into place, replacing ``folder`` only if :func:`check_output_folder` allows.

    Parameters
    ----------
    folder : str or Path
    build : callable (FolderWriter) -> None
        Writes the folder's files through the writer.
    provenance : dict
        Written as ``provenance.json`` with the report's ownership token added.

    Returns
    -------
    Path
        The folder.
    """
    folder = Path(os.path.abspath(folder))
    check_output_folder(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    staging = folder.parent / f".{folder.name}{_SIBLING}staging-{token[:12]}"
    os.mkdir(staging, 0o777)  # honours the umask, unlike tempfile.mkdtemp's 0700
    try:
        writer = FolderWriter(staging)
        build(writer)
        writer.write(PROVENANCE, json.dumps({**provenance, "report_token": token}, indent=1,
                                            default=str) + "\n")
        marker = {"format": _MARKER_FORMAT, "token": token, "files": sorted(writer.files)}
        writer.write(MARKER, json.dumps(marker, indent=1) + "\n")
        _fsync_folder(staging)
        check_output_folder(folder)  # the target may have changed during a long run
        if not folder.exists():
            try:
                os.rename(staging, folder)
            except OSError as exc:
                raise OutputFolderError(f"could not move the report into {folder}: "
                                        f"{exc.strerror}") from None
        elif _exchange(staging, folder):
            _remove_owned(staging)  # it now holds the earlier report
        else:
            retired = folder.parent / f".{folder.name}{_SIBLING}retired-{token[:12]}"
            with _signals_blocked():
                os.rename(folder, retired)
                os.rename(staging, folder)
            _remove_owned(retired)
    except BaseException:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    for leftover in _siblings(folder):  # earlier reports left by an interrupted clean-up
        _remove_owned(leftover)
    _fsync_folder(folder.parent)
    return folder
