"""The embedding store on disk: keyed, chunked, resumable, atomic.

One store folder per (collection, model, preprocessing, pooling, dtype, image size,
code version), named ``<dataset>__<model>__<preprocess><size>__<pooling>__<dtype>__<hash>``
under the ``--out`` folder, where ``<hash>`` (:func:`store_key`) covers every setting
that changes the features, the collection's identity (the resolved folder or
manifest the images come from: ``siteA/train`` and ``siteB/train`` never share a
store, whatever their names) and the versions of palaeo-ssl and of the libraries
that make the features (:data:`palaeo_ssl.cache.FEATURE_LIBRARIES`). A finished
store holds ``features.npy``, ``index.csv`` and ``meta.json`` (see
:mod:`palaeo_ssl.embeddings`; ``meta.json`` records the collection, the code
version and the digest of the features, made while they were written) plus
``skipped.csv`` (files that could not be read, with their fingerprint, so an
unchanged bad file is not retried). A store whose recorded collection is not the
one being extracted is reported (:class:`~palaeo_ssl.errors.UserError`) and left
untouched, never extended.

While an extraction runs, features go to ``chunks/`` as pairs ``chunk_<writer>-NNNNNN.npy``
(features) and ``chunk_<writer>-NNNNNN.csv`` (which files they belong to, by
path, size and modification time). ``<writer>`` names the process that wrote
them: the shard (``s0002of0004``) or ``all``, then a random token, so processes
that share one store on a shared filesystem (the shards of a cluster array job)
never pick the same name and need no coordination beyond atomic renames. The
``.csv`` is written last, through a rename, so a chunk exists only once both
halves are complete: a run killed at any moment (``kill -9`` included) loses at
most the chunk in flight.
The next run reads the finished store and every complete chunk, computes only
what is missing or changed, and consolidates everything into a new finished
store. Consolidation itself is crash-safe: the previous features are first
hard-linked (or copied) into a chunk, ``meta.json`` and ``index.csv`` are removed
before the new ``features.npy`` is renamed in, and ``meta.json`` is written
last, so a store with a ``meta.json`` is always consistent.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .cache import FEATURE_LIBRARIES, code_version, digest_start, key_hash, read_json
from .embeddings import (
    FEATURES_DIGEST,
    FEATURES_FILE,
    INDEX_FILE,
    META_FILE,
    Embeddings,
    _jsonable,
    _recorded_digest,
    atomic_save_npy,
    atomic_write_text,
    features_digest_record,
    read_store,
)
from .errors import UserError

SKIPPED_CACHE = "skipped.csv"
CHUNK_DIR = "chunks"
SHARD_DIR = "shards"  # one progress record per shard of an array job (see palaeo_ssl.shards)
Fingerprint = tuple  # (rel_path: str, file_size: int, mtime_ns: int)


def store_key(settings: Mapping[str, Any], collection: str | None = None,
              code: Mapping[str, str] | None = None) -> str:
    """Short stable hash of the settings that change the features and, when given, the collection's identity
    (:attr:`palaeo_ssl.images.ImageList.collection`) and the code version (:func:`store_code_version`); with neither,
    the hash of the settings alone (as stores were keyed before collections and versions were)."""
    if collection is None and code is None:
        return key_hash(dict(settings), length=10)
    return key_hash({"settings": dict(settings), "collection": collection, "code": dict(code or {})}, length=10)


def store_code_version() -> dict[str, str]:
    """The code version a store is keyed by: palaeo-ssl's and that of the libraries that make features."""
    return code_version(FEATURE_LIBRARIES)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(text)).strip("-")[:60] or "data"


def store_folder_name(dataset: str, settings: Mapping[str, Any], collection: str | None = None,
                      code: Mapping[str, str] | None = None) -> str:
    model = Path(str(settings["model_id"])).name or str(settings["model_id"])
    model = model.replace("-pretrain-lvd1689m", "")
    parts = [
        _slug(dataset),
        _slug(model),
        f"{settings['preprocess']}{settings['image_size']}",
        _slug(settings["pooling"]),
        _slug(settings["dtype"]),
        store_key(settings, collection, code),
    ]
    return "__".join(parts)


@dataclass
class _Source:
    path: Path | None  # the .npy holding the features (None: no rows)
    rows: dict  # fingerprint -> row


class EmbeddingStore:
    """Cache of features for one collection of images and one set of model settings.

    ``settings`` holds everything that changes the features (model id and
    Hub commit, preprocessing, image size, pooling, dtype, background); with the
    ``collection`` (:attr:`~palaeo_ssl.images.ImageList.collection`: the resolved folder or manifest; None only for stores
    made directly, as in tests) and the code version it keys the folder, so
    different settings, collections or versions never share features. A folder
    whose ``meta.json`` records another collection raises :class:`UserError`.
    """

    def __init__(self, out: str | os.PathLike, dataset: str, settings: Mapping[str, Any], writer: str = "all",
                 collection: str | None = None):
        self.settings = dict(settings)
        self.collection = None if collection is None else str(collection)
        self.code = store_code_version()
        self.folder = Path(out) / store_folder_name(dataset, self.settings, self.collection, self.code)
        self.chunk_dir = self.folder / CHUNK_DIR
        self._check_owner()
        self.folder.mkdir(parents=True, exist_ok=True)
        # unique to this process: concurrent writers into one store never choose the same chunk name
        self.writer = f"{writer}-{secrets.token_hex(4)}"
        self._next_chunk = 0

    def _check_owner(self) -> None:
        """A store folder of this name that records another collection or code version (a folder renamed or
        copied by hand, a store of earlier code) is reported, never extended or consolidated."""
        meta = read_json(self.folder / META_FILE)
        if not isinstance(meta, dict):
            return
        recorded = meta.get("collection")
        if recorded != self.collection:
            raise UserError(
                f"the embedding store {self.folder} was made from "
                f"{recorded if recorded else 'a collection it does not record (earlier palaeo-ssl)'}, not from "
                f"{self.collection}; it is left as it is. Extract into another --out folder, or delete that store "
                "if it is no longer needed")
        if meta.get("code_version") not in (None, self.code):
            raise UserError(
                f"the embedding store {self.folder} was made by other code ({_versions_text(meta['code_version'])}) "
                f"than this ({_versions_text(self.code)}); it is left as it is. Extract into another --out folder, "
                "or delete that store if it is no longer needed")

    def _new_chunk_stem(self) -> Path:
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        stem = self.chunk_dir / f"chunk_{self.writer}-{self._next_chunk:06d}"
        self._next_chunk += 1
        return stem

    # ------------------------------------------------------------------ reading what exists

    def finished(self) -> bool:
        """True when the folder holds a consistent finished store."""
        f = self.folder
        if not ((f / META_FILE).is_file() and (f / INDEX_FILE).is_file() and (f / FEATURES_FILE).is_file()):
            return False
        try:
            n_feat = np.load(f / FEATURES_FILE, mmap_mode="r").shape[0]
            n_idx = len(pd.read_csv(f / INDEX_FILE, usecols=["path"]))
        except Exception:
            return False
        return n_feat == n_idx

    def _sources(self) -> tuple[list[_Source], dict[Fingerprint, str]]:
        """Every complete source of features (finished store first, then chunks in order) and cached skips."""
        sources: list[_Source] = []
        skipped: dict[Fingerprint, str] = {}
        if self.finished():
            idx = pd.read_csv(self.folder / INDEX_FILE, dtype={"path": str}, keep_default_na=False)
            rows = {fp: i for i, fp in enumerate(zip(idx["path"].tolist(), idx["file_size"].astype("int64").tolist(),
                                                      idx["mtime_ns"].astype("int64").tolist()))}
            sources.append(_Source(self.folder / FEATURES_FILE, rows))
            if (self.folder / SKIPPED_CACHE).is_file():
                sk = pd.read_csv(self.folder / SKIPPED_CACHE, dtype={"path": str, "reason": str}, keep_default_na=False)
                for p, s, m, r in zip(sk["path"].tolist(), sk["file_size"].tolist(), sk["mtime_ns"].tolist(),
                                      sk["reason"].tolist()):
                    skipped[(p, int(s), int(m))] = r
        self._read_markers = []
        for marker in sorted(self.chunk_dir.glob("chunk_*.csv")):
            self._read_markers.append(marker)
            npy = marker.with_suffix(".npy")
            try:
                table = pd.read_csv(marker, dtype={"path": str, "reason": str}, keep_default_na=False)
                n_rows = int((table["row"] >= 0).sum())
                if n_rows and _npy_shape(npy)[0] < n_rows:
                    raise ValueError("fewer feature rows than the chunk's table lists")
            except Exception:
                continue  # a damaged chunk is recomputed
            rows = {}
            for p, s, m, r, reason in zip(table["path"].tolist(), table["file_size"].tolist(),
                                          table["mtime_ns"].tolist(), table["row"].tolist(), table["reason"].tolist()):
                fp = (p, int(s), int(m))
                if r >= 0:
                    rows[fp] = int(r)
                    skipped.pop(fp, None)
                else:
                    skipped[fp] = reason
            sources.append(_Source(npy if rows else None, rows))
        return sources, skipped

    def lookup(self) -> tuple[set[Fingerprint], dict[Fingerprint, str]]:
        """Fingerprints that already have features, and those cached as unreadable (with reason)."""
        sources, skipped = self._sources()
        have: set[Fingerprint] = set()
        for s in sources:
            have.update(s.rows)
        return have, {fp: r for fp, r in skipped.items() if fp not in have}

    # ------------------------------------------------------------------ writing
    def write_chunk(self, fingerprints: Sequence[Fingerprint], features: np.ndarray | None,
                    skipped: Sequence[tuple[Fingerprint, str]] = ()) -> Path:
        """Atomically add one chunk: ``features[i]`` belongs to ``fingerprints[i]``; ``skipped`` are failures."""
        stem = self._new_chunk_stem()
        if features is not None and len(fingerprints):
            feats = np.ascontiguousarray(features, dtype=np.float32)
            if feats.shape[0] != len(fingerprints):
                raise ValueError("one feature row per fingerprint")
            atomic_save_npy(stem.with_suffix(".npy"), feats)
        rows = [(p, s, m, i, "") for i, (p, s, m) in enumerate(fingerprints)]
        rows += [(p, s, m, -1, reason) for (p, s, m), reason in skipped]
        table = pd.DataFrame(rows, columns=["path", "file_size", "mtime_ns", "row", "reason"])
        atomic_write_text(stem.with_suffix(".csv"), table.to_csv(index=False))  # commit marker
        return stem

    def _preserve_finished(self) -> bool:
        """Turn the finished store into a chunk (hard link, O(1)) before it is replaced; whether there was one."""
        if not self.finished():
            return False
        idx = pd.read_csv(self.folder / INDEX_FILE, dtype={"path": str}, keep_default_na=False)
        stem = self._new_chunk_stem()
        npy = stem.with_suffix(".npy")
        try:
            os.link(self.folder / FEATURES_FILE, npy)
        except OSError:  # file systems without hard links
            tmp = npy.with_suffix(".npy.tmp")
            shutil.copyfile(self.folder / FEATURES_FILE, tmp)
            os.replace(tmp, npy)
        table = pd.DataFrame({"path": idx["path"], "file_size": idx["file_size"], "mtime_ns": idx["mtime_ns"],
                              "row": np.arange(len(idx)), "reason": ""})
        if (self.folder / SKIPPED_CACHE).is_file():
            sk = pd.read_csv(self.folder / SKIPPED_CACHE, dtype={"path": str, "reason": str}, keep_default_na=False)
            sk = sk.assign(row=-1)[["path", "file_size", "mtime_ns", "row", "reason"]]
            table = pd.concat([table, sk], ignore_index=True)
        atomic_write_text(stem.with_suffix(".csv"), table.to_csv(index=False))
        return True

    def consolidate(self, fingerprints: Sequence[Fingerprint], labels: np.ndarray, class_names: list[str],
                    specimens: list[str] | None, meta: Mapping[str, Any], dim: int,
                    block: int = 65536) -> tuple[Embeddings, list[tuple[str, str]]]:
        """Write the finished store for exactly ``fingerprints`` (in that order) and drop the chunks.

        Files without features (unreadable) are left out of the store and
        returned as (path, reason). The features are streamed, ``block`` rows at a
        time, from each source into a preallocated ``features.npy``, whose written
        pages are handed back to the page cache as it goes: memory holds one block,
        never a second copy of the store (10^6 x 1,024: 54-76 s and 1.1 GB peak on 2 loaded cores; see
        ``benchmarks/consolidate_scale.py``).
        """
        sources, skipped_cache = self._sources()
        src, row = _locate(sources, fingerprints)
        keep = np.flatnonzero(src >= 0)
        skipped = [(fingerprints[i], skipped_cache.get(fingerprints[i], "not extracted (interrupted?)"))
                   for i in np.flatnonzero(src < 0)]

        # nothing changed: the finished store already is exactly this
        unchanged = (
            self.finished() and len(sources) == 1 and len(keep) == len(sources[0].rows)
            and bool(np.all(src[keep] == 0)) and bool(np.array_equal(row[keep], np.arange(len(keep))))
        )
        digest = self._recorded_digest() if unchanged else None
        if digest is None:
            if self._preserve_finished():
                sources, _ = self._sources()
                src, row = _locate(sources, fingerprints)
            for name in (META_FILE, INDEX_FILE):
                try:
                    os.unlink(self.folder / name)
                except FileNotFoundError:
                    pass
            tmp = self.folder / f".{FEATURES_FILE}.tmp"
            sha = _gather(tmp, [s.path for s in sources], src[keep], row[keep], dim, block)
            os.replace(tmp, self.folder / FEATURES_FILE)
            digest = features_digest_record(self.folder / FEATURES_FILE, sha)

        keep_list = keep.tolist()
        index = pd.DataFrame({
            "path": [fingerprints[i][0] for i in keep_list],
            "label": labels[keep] if len(keep) else np.zeros(0, np.int64),
            "class_name": [class_names[labels[i]] if labels[i] >= 0 else "" for i in keep_list],
            "specimen": [specimens[i] for i in keep_list] if specimens is not None else [""] * len(keep),
            "file_size": [fingerprints[i][1] for i in keep_list],
            "mtime_ns": [fingerprints[i][2] for i in keep_list],
        })
        skipped_table = pd.DataFrame([(p, s, m, r) for (p, s, m), r in skipped],
                                     columns=["path", "file_size", "mtime_ns", "reason"])
        full_meta = dict(meta)
        full_meta.update(class_names=list(class_names), n_images=len(keep), n_skipped=len(skipped), dim=dim,
                         has_specimens=specimens is not None, settings=self.settings, collection=self.collection,
                         code_version=self.code)
        full_meta[FEATURES_DIGEST] = digest
        atomic_write_text(self.folder / INDEX_FILE, index.to_csv(index=False))
        atomic_write_text(self.folder / SKIPPED_CACHE, skipped_table.to_csv(index=False))
        atomic_write_text(self.folder / META_FILE, json.dumps(_jsonable(full_meta), indent=2))
        self._drop_consumed_chunks()
        shutil.rmtree(self.folder / SHARD_DIR, ignore_errors=True)  # what the shards wrote is in the store now
        self._next_chunk = 0
        return read_store(self.folder), [(fp[0], r) for fp, r in skipped]


    def _recorded_digest(self) -> dict[str, Any] | None:
        """The finished store's record of its features' digest, when it still describes ``features.npy``."""
        meta = read_json(self.folder / META_FILE)
        record = meta.get(FEATURES_DIGEST) if isinstance(meta, dict) else None
        if _recorded_digest(self.folder / FEATURES_FILE, record, None) is None:
            return None
        return dict(record)

    def _drop_consumed_chunks(self, stale_seconds: float = 3600) -> None:
        """Delete the chunks the last :meth:`_sources` read (marker first), not any written since by a
        process still running; then temporary files left by killed writers, and the folder if empty."""
        for marker in getattr(self, "_read_markers", []):
            for path in (marker, marker.with_suffix(".npy")):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        now = time.time()
        for tmp in self.chunk_dir.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > stale_seconds:
                    os.unlink(tmp)
            except OSError:
                pass
        try:
            self.chunk_dir.rmdir()
        except OSError:
            pass


def _locate(sources: list[_Source], fingerprints: Sequence[Fingerprint]) -> tuple[np.ndarray, np.ndarray]:
    """(source, row) of each fingerprint as two int64 arrays, -1 where none has it; later sources win."""
    found: dict[Fingerprint, tuple[int, int]] = {}
    for si, s in enumerate(sources):
        for fp, r in s.rows.items():
            found[fp] = (si, r)
    src = np.full(len(fingerprints), -1, dtype=np.int64)
    row = np.full(len(fingerprints), -1, dtype=np.int64)
    for i, fp in enumerate(fingerprints):
        hit = found.get(fp)
        if hit is not None:
            src[i], row[i] = hit
    return src, row


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, byte offset of the data) of a C-ordered ``.npy`` file, reading only its header."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        if fortran:
            raise ValueError(f"{path} is Fortran-ordered")
        return shape, dtype, fh.tell()


def _npy_shape(path: Path) -> tuple[int, ...]:
    return _npy_header(path)[0]


def _read_rows(path: Path, rows: np.ndarray, dim: int) -> np.ndarray:
    """Rows ``rows`` (sorted or not) of the (n, dim) float32 ``.npy`` at ``path``, read from the file, not mapped."""
    shape, dtype, offset = _npy_header(path)
    if len(shape) != 2 or shape[1] != dim or dtype != np.float32:
        raise ValueError(f"{path} holds {shape} {dtype}, not (n, {dim}) float32")
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if hi - lo <= 4 * len(rows):  # one read of the span that holds them
        span = np.fromfile(path, dtype=np.float32, count=(hi - lo) * dim, offset=offset + lo * dim * 4)
        return span.reshape(hi - lo, dim)[rows - lo]
    out = np.empty((len(rows), dim), np.float32)
    with open(path, "rb") as fh:  # scattered rows: one read each
        for k, r in enumerate(rows.tolist()):
            fh.seek(offset + r * dim * 4)
            out[k] = np.frombuffer(fh.read(dim * 4), dtype=np.float32)
    return out


def _gather(target: Path, paths: Sequence[Path | None], src: np.ndarray, row: np.ndarray, dim: int,
            block: int, release_every: int = 64 << 20) -> str:
    """Write row ``k`` of ``paths[src[k]]``'s row ``row[k]`` to row ``k`` of a new (len(src), dim) float32 ``.npy``;
    return the SHA-256 of the array written (:func:`palaeo_ssl.cache.array_digest`, all 64 hex characters).

    Preallocated with :func:`numpy.lib.format.open_memmap` and filled in order, ``block`` rows at a time
    (each block's rows read source by source, a span of a source in one read); each block is hashed as it
    is written, so the digest costs no second read of the store. Every ``release_every`` bytes the written
    pages are flushed and dropped from this process (``madvise(MADV_DONTNEED)``), so the resident memory
    stays at about one block however large the store.
    """
    n = len(src)
    h = digest_start((n, dim), np.float32)
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.float32, shape=(n, dim))
    offset = out.offset
    del out
    if n == 0 or dim == 0:
        return h.hexdigest()
    with open(target, "r+b") as fh:
        mm = mmap.mmap(fh.fileno(), 0)
        try:
            arr = np.ndarray((n, dim), dtype=np.float32, buffer=mm, offset=offset)
            pending = 0
            for a in range(0, n, block):
                b = min(n, a + block)
                s_blk, r_blk = src[a:b], row[a:b]
                order = np.argsort(s_blk, kind="stable")
                bounds = np.flatnonzero(np.diff(s_blk[order])) + 1
                dst = arr[a:b]
                for group in np.split(order, bounds):
                    dst[group] = _read_rows(paths[int(s_blk[group[0]])], r_blk[group], dim)
                h.update(memoryview(dst.reshape(-1).view(np.uint8)))
                pending += (b - a) * dim * 4
                if pending >= release_every:
                    mm.flush()
                    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                        mm.madvise(mmap.MADV_DONTNEED)
                    pending = 0
            mm.flush()
            del arr, dst
        finally:
            mm.close()
    return h.hexdigest()


def _versions_text(versions: Any) -> str:
    if not isinstance(versions, Mapping):
        return str(versions)
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def fingerprint(rel_path: str, path: Path) -> Fingerprint | None:
    """(relative path, size in bytes, mtime in ns), or None when the file cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (rel_path, int(st.st_size), int(st.st_mtime_ns))

