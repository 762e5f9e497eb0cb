"""One way to key and write cached results: a JSON key hashed, files written atomically.

Every cache of the package goes through here: the embedding store's folder key
(:mod:`palaeo_ssl.store`), the cached projections (``projections.npz``,
:mod:`palaeo_ssl.morphospace.projections`) and the stages of a run
(:mod:`palaeo_ssl.pipeline`). A key is a JSON-able mapping (a config
dataclass's ``asdict()`` plus the identity of the embeddings it reads,
:meth:`palaeo_ssl.embeddings.Embeddings.identity`); :func:`key_hash` is the
SHA-256 of its canonical JSON. Files are written beside their target and
renamed over it, so a reader never sees half a file, even after ``kill -9``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, paths, tuples and dataclasses turned into plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def canonical_json(key: Any) -> str:
    """The JSON text that :func:`key_hash` hashes (sorted keys, no whitespace variation)."""
    return json.dumps(jsonable(key), sort_keys=True, default=str)


def key_hash(key: Any, length: int = 16) -> str:
    """Hex SHA-256 (first ``length`` characters) of the canonical JSON of ``key``."""
    return hashlib.sha256(canonical_json(key).encode()).hexdigest()[:length]


def array_digest(x: np.ndarray, length: int = 16) -> str:
    """SHA-256 of the shape, dtype and bytes of an array (hex, ``length`` characters), in 64 MiB blocks."""
    x = np.ascontiguousarray(x)
    h = hashlib.sha256(f"{x.shape}{x.dtype}".encode())
    flat = x.reshape(-1).view(np.uint8)
    step = 64 << 20
    for start in range(0, flat.size, step):
        h.update(flat[start:start + step])
    return h.hexdigest()[:length]


# ---------------------------------------------------------------------- atomic writes
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux: ``/proc/self/status``);
    elsewhere set and restored at once, under a lock, so that this process's own threads never see it changed."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permissions an ordinary new file gets under the user's umask (0644 under umask 022)."""
    return 0o666 & ~current_umask()


def _atomic_write(path: Path, mode: str, write) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    ``tempfile.mkstemp`` makes the temporary file readable by its owner only; it is given the mode an
    ordinary new file gets under the user's umask before the rename, so colleagues can read what a lab's
    server or cluster holds exactly as they could read a file written by ``open``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, new_file_mode())
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    _atomic_write(path, "w", lambda fh: fh.write(text))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (see :func:`jsonable`) through a temporary file and a rename."""
    atomic_write_text(path, json.dumps(jsonable(data), indent=2))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``numpy.save`` through a temporary file and a rename."""
    _atomic_write(path, "wb", lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))


def atomic_save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``numpy.savez`` (uncompressed) through a temporary file and a rename."""
    _atomic_write(path, "wb", lambda fh: np.savez(fh, **arrays))


def digest_start(shape: tuple, dtype: Any = np.float32) -> "hashlib._Hash":
    """A SHA-256 fed as :func:`array_digest` feeds it, before the bytes: feed it the array's rows in order
    (C order) and its hex digest equals ``array_digest(array, 64)``; so a digest can be made while the rows
    are written, without reading them back."""
    return hashlib.sha256(f"{tuple(int(v) for v in shape)}{np.dtype(dtype)}".encode())


def atomic_save_npy_digest(path: Path, array: np.ndarray, block_rows: int = 65536) -> str:
    """:func:`atomic_save_npy` of an array of one or more dimensions, written ``block_rows`` rows at a time and
    hashed as it is written; returns the full :func:`array_digest` (64 hex characters) of what was written.

    The array is read once (a memory-mapped store saved elsewhere is not read a second time to digest it)
    and never copied whole."""
    arr = np.asarray(array)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    h = digest_start(arr.shape, arr.dtype)

    def write(fh) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": arr.shape}
        np.lib.format.write_array_header_2_0(fh, header) if len(repr(header)) > 65000 else \
            np.lib.format.write_array_header_1_0(fh, header)
        for start in range(0, arr.shape[0], block_rows):
            data = memoryview(np.ascontiguousarray(arr[start:start + block_rows]).reshape(-1).view(np.uint8))
            h.update(data)
            fh.write(data)

    _atomic_write(path, "wb", write)
    return h.hexdigest()


#: distributions whose version can change a cached number (read from the installed metadata, no import)
NUMERIC_LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "umap-learn", "pynndescent",
                     "pandas")


#: distributions whose version can change an embedding (decoding, resizing, the model): the store's key
FEATURE_LIBRARIES = ("numpy", "torch", "torchvision", "transformers", "pillow")


@functools.lru_cache(maxsize=None)
def code_version(libraries: tuple[str, ...] | None = None) -> dict[str, str]:
    """The code that makes a cached result: palaeo-ssl's version and the versions of the libraries that change
    the numbers (:data:`NUMERIC_LIBRARIES`, or ``libraries``; "absent" for one not installed). Every cache key
    includes it, so a result made by other code is never reused: the analysis stages and the projection cache
    with :data:`NUMERIC_LIBRARIES`, the embedding store with :data:`FEATURE_LIBRARIES` (an upgrade of, say,
    umap-learn does not change a feature, so it does not recompute the embeddings)."""
    from importlib import metadata

    from . import __version__

    out = {"palaeo_ssl": __version__}
    for name in (NUMERIC_LIBRARIES if libraries is None else tuple(libraries)):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def user_cache_dir(*parts: str) -> Path:
    """palaeo-ssl's folder in the user's cache (``$XDG_CACHE_HOME/palaeo-ssl``, ``~/.cache`` by default), joined
    with ``parts`` (the embedding store's default home, the demo's smoke model)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "palaeo-ssl", *parts)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or damaged (a cache to recompute)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def files_fingerprint(folder: str | os.PathLike, names: Sequence[str]) -> list[tuple[str, int, int]]:
    """(name, size in bytes, modification time in ns) of each of ``names`` that exists in ``folder``: an exact
    stand-in for files too large to hash on every use (a local model's weights), as the store uses for images."""
    out = []
    for name in names:
        try:
            st = os.stat(Path(folder) / name)
        except OSError:
            continue
        out.append((name, int(st.st_size), int(st.st_mtime_ns)))
    return out


__all__ = ["jsonable", "canonical_json", "key_hash", "array_digest", "code_version", "atomic_write_text", "atomic_write_json",
           "atomic_save_npy", "atomic_save_npy_digest", "atomic_save_npz", "current_umask", "digest_start",
           "files_fingerprint", "new_file_mode", "read_json", "unlink_quietly", "user_cache_dir", "FEATURE_LIBRARIES",
           "NUMERIC_LIBRARIES"]
