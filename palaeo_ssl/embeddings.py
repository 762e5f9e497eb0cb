"""The :class:`Embeddings` container that every analysis takes, and its store format.

A store folder holds three files, all readable without palaeo-ssl:

``features.npy``
    float32 array of shape (N, D), memory-mappable with ``numpy.load(mmap_mode="r")``.
``index.csv``
    one row per feature row: ``path`` (relative to the data root), ``label``
    (int, -1 when unlabelled), ``class_name``, ``specimen``, ``file_size``
    (bytes) and ``mtime_ns`` (modification time, integer nanoseconds since the
    epoch); ``specimen``, ``file_size`` and ``mtime_ns`` may be empty for
    embeddings computed elsewhere.
``meta.json``
    how the features were made (model id and revision, preprocessing, pooling,
    dtype, device, image size, package versions, created time, counts), the
    ordered ``class_names`` and ``features_digest``: the SHA-256 of
    ``features.npy``'s array (shape, dtype and bytes, as
    :func:`palaeo_ssl.cache.array_digest`), made while the file was written,
    with the file's size and modification time then (a file changed since is
    digested anew).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .cache import array_digest, atomic_save_npy, atomic_write_text, key_hash  # noqa: F401  (atomic writers re-exported)
from .cache import atomic_save_npy_digest
from .cache import jsonable as _jsonable  # noqa: F401
from .errors import UserError

FEATURES_FILE = "features.npy"
INDEX_FILE = "index.csv"
META_FILE = "meta.json"
INDEX_COLUMNS = ["path", "label", "class_name", "specimen", "file_size", "mtime_ns"]
#: the key of ``meta.json`` that records the digest of ``features.npy`` (``sha256``, ``size``, ``mtime_ns``)
FEATURES_DIGEST = "features_digest"


@dataclass(frozen=True)
class _StoreRows:
    """Where an :class:`Embeddings`' features come from, when they are rows of a store on disk: the digest the
    store recorded for its ``features.npy`` (checked against the file's size and modification time),
    which rows (None: all, in order) and the very array they were read into (an array put in its place
    later is digested anew)."""

    digest: str
    rows: np.ndarray | None
    features: Any
    path: str
    size: int
    mtime_ns: int

    def still_valid(self, features: Any) -> bool:
        if features is not self.features:
            return False
        try:
            st = os.stat(self.path)
        except OSError:  # the store is gone: the array still holds what was read (a mapping keeps the file)
            return True
        return (int(st.st_size), int(st.st_mtime_ns)) == (self.size, self.mtime_ns)


def _strings_digest(items: Sequence[str]) -> str:
    """SHA-256 (16 hex characters) of a list of strings (paths, specimens): their count and their text, NUL-separated
    (a character no path holds), in one pass."""
    h = hashlib.sha256(str(len(items)).encode())
    h.update("\0".join(map(str, items)).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


@dataclass
class Embeddings:
    """Feature vectors of N images with their labels.

    Attributes
    ----------
    features : (N, D) float32 array
    paths : list of N str, relative to the data root (``meta["data_root"]``)
    labels : (N,) int64 array, index into ``class_names``; -1 where unlabelled
    class_names : list of str, the name of each label value
    specimens : list of N str, or None; the specimen/group id of each image,
        used to keep all images of one specimen on the same side of a split
    meta : dict, how the features were made (free-form, JSON-serialisable)
    """

    features: np.ndarray
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    specimens: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: set by :func:`read_store` (and kept by :meth:`subset`): the rows of a store these features are
    _store_rows: _StoreRows | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        feats = np.asarray(self.features)
        if feats.ndim != 2:
            raise ValueError(f"features must be a 2-D array (N x D), got shape {feats.shape}")
        if feats.dtype != np.float32:
            feats = feats.astype(np.float32)
        self.features = feats
        self.paths = [str(p) for p in self.paths]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.class_names = [str(c) for c in self.class_names]
        n = feats.shape[0]
        if len(self.paths) != n:
            raise ValueError(f"{len(self.paths)} paths for {n} feature rows")
        if self.labels.shape[0] != n:
            raise ValueError(f"{self.labels.shape[0]} labels for {n} feature rows")
        if n and self.labels.max(initial=-1) >= len(self.class_names):
            raise ValueError(
                f"label {int(self.labels.max())} has no class name ({len(self.class_names)} class names given)"
            )
        if n and self.labels.min(initial=0) < -1:
            raise ValueError("labels must be >= 0, or -1 for unlabelled images")
        if self.specimens is not None:
            self.specimens = [str(s) for s in self.specimens]
            if len(self.specimens) != n:
                raise ValueError(f"{len(self.specimens)} specimens for {n} feature rows")
        self.meta = dict(self.meta or {})

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_labels(self) -> bool:
        """True if at least one image has a label."""
        return bool(len(self) and (self.labels >= 0).any())

    @property
    def data_root(self) -> Path | None:
        """Folder that ``paths`` are relative to, when known."""
        root = self.meta.get("data_root")
        return Path(root) if root else None

    def image_path(self, i: int) -> Path:
        """Absolute path of image ``i`` (needs ``meta["data_root"]``)."""
        root = self.data_root
        return (root / self.paths[i]) if root is not None else Path(self.paths[i])

    def subset(self, index: Sequence[int] | np.ndarray) -> "Embeddings":
        """Rows ``index`` (ints or a boolean mask), keeping class names and meta.

        The subset's :meth:`identity` differs from the whole's (it names the rows held)."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        out = Embeddings(
            features=np.asarray(self.features[idx]),
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            specimens=None if self.specimens is None else [self.specimens[i] for i in idx],
            meta={k: (np.asarray(v)[idx] if k.startswith("_") else v) for k, v in self.meta.items()},
        )
        src = self._store_rows
        if src is not None and src.still_valid(self.features):
            rows = np.arange(len(self), dtype=np.int64) if src.rows is None else src.rows
            out._store_rows = replace(src, rows=np.asarray(rows[idx], dtype=np.int64), features=out.features)
        return out

    def features_digest(self) -> str:
        """What the features are, as a short hash (16 hex characters): :func:`~palaeo_ssl.cache.array_digest`
        of the array; for rows of a store, the digest the store recorded when it wrote ``features.npy``
        (with the rows held), so that a large store is not read again to be named."""
        src = self._store_rows
        if src is not None and src.still_valid(self.features):
            if src.rows is None:
                return src.digest[:16]
            return key_hash({"store_features": src.digest, "rows": array_digest(src.rows)})
        return array_digest(np.asarray(self.features))

    def identity(self) -> str:
        """What makes these embeddings what they are, as a short hash: the one definition every cache uses.

        The features (:meth:`features_digest`: their bytes, or for a store the digest written with them,
        checked against ``features.npy``'s size and modification time), the rows held (count and order:
        a :meth:`subset` such as :meth:`labelled` is not the whole), the paths, labels, class names and
        specimens, and the settings that made the features (model and commit, preprocessing, pooling,
        dtype, image size; a store's ``meta["settings"]``).
        """
        return key_hash({
            "features": self.features_digest(),
            "shape": [int(v) for v in self.features.shape],
            "paths": _strings_digest(self.paths),
            "labels": array_digest(self.labels),
            "class_names": list(self.class_names),
            "specimens": None if self.specimens is None else _strings_digest(self.specimens),
            "settings": self.meta.get("settings", {}),
        })

    def labelled(self) -> "Embeddings":
        """Only the images that have a label."""
        return self.subset(self.labels >= 0)

    def normalized(self) -> np.ndarray:
        """L2-normalised copy of the features (rows of zero norm stay zero)."""
        return l2_normalize(self.features)

    def index_frame(self) -> pd.DataFrame:
        """The index table: one row per image (columns as in ``index.csv``)."""
        file_size = self.meta.get("_file_size")
        mtime = self.meta.get("_mtime_ns")
        n = len(self)
        return pd.DataFrame(
            {
                "path": self.paths,
                "label": self.labels,
                "class_name": [self.class_names[l] if l >= 0 else "" for l in self.labels],
                "specimen": self.specimens if self.specimens is not None else [""] * n,
                "file_size": file_size if file_size is not None else [pd.NA] * n,
                "mtime_ns": mtime if mtime is not None else [pd.NA] * n,
            },
            columns=INDEX_COLUMNS,
        )

    # ------------------------------------------------------------------ disk
    def save(self, folder: str | os.PathLike) -> Path:
        """Write a store folder that :func:`load_embeddings` and every CLI command accept.

        ``meta.json`` records the digest of the features, made while they are written (see the module's
        docstring), so that the store's :meth:`identity` never reads them again."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        index = self.index_frame()
        meta = {k: v for k, v in self.meta.items() if not k.startswith("_")}
        meta["class_names"] = list(self.class_names)
        meta["n_images"] = len(self)
        meta["dim"] = self.dim
        meta["has_specimens"] = self.specimens is not None
        digest = atomic_save_npy_digest(folder / FEATURES_FILE, self.features)
        meta[FEATURES_DIGEST] = features_digest_record(folder / FEATURES_FILE, digest)
        atomic_write_text(folder / INDEX_FILE, index.to_csv(index=False))
        atomic_write_text(folder / META_FILE, json.dumps(_jsonable(meta), indent=2))
        return folder


def features_digest_record(path: Path, digest: str) -> dict[str, Any]:
    """``meta.json``'s record of a features file just written: its digest, size and modification time."""
    st = os.stat(path)
    return {"sha256": digest, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


# ---------------------------------------------------------------------- loading
def is_store(folder: Path) -> bool:
    return (folder / FEATURES_FILE).is_file() and (folder / INDEX_FILE).is_file() and (folder / META_FILE).is_file()


def find_stores(path: Path) -> list[Path]:
    """Store folders at ``path`` or below it (at most three levels down)."""
    path = Path(path)
    if is_store(path):
        return [path]
    found: list[Path] = []
    for pattern in ("*", "*/*", "*/*/*"):
        found.extend(p for p in sorted(path.glob(pattern)) if p.is_dir() and is_store(p))
        if found:
            break
    return found


def read_store(folder: Path, mmap: bool = True) -> Embeddings:
    """Read one store folder (no searching)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        features = np.load(folder / FEATURES_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        index = pd.read_csv(
            folder / INDEX_FILE,
            dtype={"path": str, "class_name": str, "specimen": str},
            keep_default_na=False,
        )
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise UserError(f"the embedding store at {folder} is damaged ({exc}); delete it and extract again") from exc
    if len(index) != features.shape[0]:
        raise UserError(
            f"the embedding store at {folder} is inconsistent ({len(index)} index rows, "
            f"{features.shape[0]} feature rows); delete it and extract again"
        )
    class_names = meta.get("class_names")
    if class_names is None:
        class_names = sorted({c for c in index["class_name"] if c})
    specimens = None
    if meta.get("has_specimens") or ("specimen" in index and (index["specimen"] != "").any()):
        specimens = index["specimen"].astype(str).tolist()
    meta = dict(meta)
    meta["store_path"] = str(folder.resolve())
    for col, key in (("file_size", "_file_size"), ("mtime_ns", "_mtime_ns")):
        if col in index and len(index) and (index[col].astype(str) != "").all():
            meta[key] = pd.to_numeric(index[col]).to_numpy(dtype=np.int64)
    emb = Embeddings(
        features=features,
        paths=index["path"].astype(str).tolist(),
        labels=pd.to_numeric(index["label"]).to_numpy(dtype=np.int64),
        class_names=class_names,
        specimens=specimens,
        meta=meta,
    )
    emb._store_rows = _recorded_digest(folder / FEATURES_FILE, meta.get(FEATURES_DIGEST), emb.features)
    return emb


def _recorded_digest(path: Path, record: Any, features: Any) -> _StoreRows | None:
    """The store's recorded digest of ``path`` when the file is still the one it was made of (same size and
    modification time); None otherwise (a store of earlier code, or a features.npy replaced by hand): its
    identity then digests the features themselves."""
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return None
    try:
        st = os.stat(path)
        size, mtime = int(record["size"]), int(record["mtime_ns"])
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if (int(st.st_size), int(st.st_mtime_ns)) != (size, mtime):
        return None
    return _StoreRows(digest=record["sha256"], rows=None, features=features, path=str(path), size=size, mtime_ns=mtime)


def load_embeddings(path: str | os.PathLike | Embeddings) -> Embeddings:
    """Load embeddings from a store folder or from an ``extract`` output folder.

    ``path`` may be the store folder itself (it holds ``features.npy``,
    ``index.csv`` and ``meta.json``) or a folder above it, such as the ``--out``
    folder of ``palaeo-ssl extract``. Features are memory-mapped, not read into
    memory. An :class:`Embeddings` passes through unchanged.
    """
    if isinstance(path, Embeddings):
        return path
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"no embeddings at {p}: pass the --out folder of 'palaeo-ssl extract' or a store folder")
    if p.is_file():
        raise UserError(
            f"{p} is a file; pass the folder that holds features.npy, index.csv and meta.json "
            "(or the --out folder of 'palaeo-ssl extract')"
        )
    stores = find_stores(p)
    pending = _unconsolidated(p, stores)
    if not stores and pending:
        raise UserError(pending)
    if pending:
        import logging

        logging.getLogger(__name__).warning(pending)
    if not stores:
        raise UserError(
            f"no embedding store in {p}: run 'palaeo-ssl extract DATA --out {p}' first, "
            "or save features you already have with Embeddings(...).save(folder)"
        )
    if len(stores) > 1:
        listing = ", ".join(str(s) for s in stores)
        raise UserError(f"{p} holds {len(stores)} embedding stores; pass one of them: {listing}")
    return read_store(stores[0])


def _unconsolidated(path: Path, stores: list[Path]) -> str | None:
    """What :mod:`palaeo_ssl.shards` says about shards written under ``path`` but not consolidated, if any."""
    from .shards import unconsolidated_message  # the store's writers sit above this module

    candidates = stores or [q for q in [path, *sorted(path.glob("*"))] if (q / "shards").is_dir()]
    messages = [m for q in candidates if (m := unconsolidated_message(q))]
    return "; ".join(messages) or None
