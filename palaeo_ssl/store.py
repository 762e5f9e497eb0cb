"""The embedding store on disk: keyed, chunked, resumable, atomic.

One store folder per (dataset, model, preprocessing, pooling, dtype, image size),
named ``<dataset>__<model>__<preprocess><size>__<pooling>__<dtype>__<hash>``
under the ``--out`` folder. A finished store holds ``features.npy``,
``index.csv`` and ``meta.json`` (see :mod:`palaeo_ssl.embeddings`) plus
``skipped.csv`` (files that could not be read, with their fingerprint, so an
unchanged bad file is not retried).

While an extraction runs, features go to ``chunks/`` as numbered pairs
``chunk_NNNNNN.npy`` (features) and ``chunk_NNNNNN.csv`` (which files they
belong to, by path, size and modification time). The ``.csv`` is written last,
through a rename, so a chunk exists only once both halves are complete: a run
killed at any moment (``kill -9`` included) loses at most the chunk in flight.
The next run reads the finished store and every complete chunk, computes only
what is missing or changed, and consolidates everything into a new finished
store. Consolidation itself is crash-safe: the previous features are first
hard-linked (or copied) into a chunk, ``meta.json`` and ``index.csv`` are removed
before the new ``features.npy`` is renamed in, and ``meta.json`` is written
last, so a store with a ``meta.json`` is always consistent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .cache import key_hash
from .embeddings import (
    FEATURES_FILE,
    INDEX_FILE,
    META_FILE,
    Embeddings,
    _jsonable,
    atomic_save_npy,
    atomic_write_text,
    read_store,
)

SKIPPED_CACHE = "skipped.csv"
CHUNK_DIR = "chunks"
Fingerprint = tuple  # (rel_path: str, file_size: int, mtime_ns: int)


def store_key(settings: Mapping[str, Any]) -> str:
    """Short stable hash of the settings that change the features."""
    return key_hash(dict(settings), length=10)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(text)).strip("-")[:60] or "data"


def store_folder_name(dataset: str, settings: Mapping[str, Any]) -> str:
    model = Path(str(settings["model_id"])).name or str(settings["model_id"])
    model = model.replace("-pretrain-lvd1689m", "")
    parts = [
        _slug(dataset),
        _slug(model),
        f"{settings['preprocess']}{settings['image_size']}",
        _slug(settings["pooling"]),
        _slug(settings["dtype"]),
        store_key(settings),
    ]
    return "__".join(parts)


@dataclass
class _Source:
    features: np.ndarray  # (n, D), usually memory-mapped
    rows: dict  # fingerprint -> row


class EmbeddingStore:
    """Cache of features for one dataset and one set of model settings.

    ``settings`` holds everything that changes the features (model id and
    Hub commit, preprocessing, image size, pooling, dtype, background); its hash names the
    folder, so different settings never share features.
    """

    def __init__(self, out: str | os.PathLike, dataset: str, settings: Mapping[str, Any]):
        self.settings = dict(settings)
        self.folder = Path(out) / store_folder_name(dataset, self.settings)
        self.chunk_dir = self.folder / CHUNK_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self._next_chunk = self._max_chunk_number() + 1

    # ------------------------------------------------------------------ reading what exists
    def _max_chunk_number(self) -> int:
        nums = [int(m.group(1)) for p in self.chunk_dir.glob("chunk_*.*")
                if (m := re.match(r"chunk_(\d+)\.", p.name))]
        return max(nums, default=-1)

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
            feats = np.load(self.folder / FEATURES_FILE, mmap_mode="r")
            idx = pd.read_csv(self.folder / INDEX_FILE, dtype={"path": str}, keep_default_na=False)
            rows = {(p, int(s), int(m)): i for i, (p, s, m) in
                    enumerate(zip(idx["path"], idx["file_size"], idx["mtime_ns"]))}
            sources.append(_Source(feats, rows))
            if (self.folder / SKIPPED_CACHE).is_file():
                sk = pd.read_csv(self.folder / SKIPPED_CACHE, dtype={"path": str, "reason": str}, keep_default_na=False)
                for p, s, m, r in zip(sk["path"], sk["file_size"], sk["mtime_ns"], sk["reason"]):
                    skipped[(p, int(s), int(m))] = r
        for marker in sorted(self.chunk_dir.glob("chunk_*.csv")):
            npy = marker.with_suffix(".npy")
            try:
                table = pd.read_csv(marker, dtype={"path": str, "reason": str}, keep_default_na=False)
                feats = np.load(npy, mmap_mode="r") if npy.is_file() else np.zeros((0, 0), np.float32)
            except Exception:
                continue  # a damaged chunk is recomputed
            rows = {}
            for p, s, m, r, reason in zip(table["path"], table["file_size"], table["mtime_ns"], table["row"],
                                          table["reason"]):
                fp = (p, int(s), int(m))
                if int(r) >= 0:
                    rows[fp] = int(r)
                    skipped.pop(fp, None)
                else:
                    skipped[fp] = reason
            sources.append(_Source(feats, rows))
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
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        n = self._next_chunk
        self._next_chunk += 1
        stem = self.chunk_dir / f"chunk_{n:06d}"
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

    def _preserve_finished(self) -> None:
        """Turn the finished store into a chunk (hard link, O(1)) before it is replaced."""
        if not self.finished():
            return
        idx = pd.read_csv(self.folder / INDEX_FILE, dtype={"path": str}, keep_default_na=False)
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        n = self._next_chunk
        self._next_chunk += 1
        stem = self.chunk_dir / f"chunk_{n:06d}"
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

    def consolidate(self, fingerprints: Sequence[Fingerprint], labels: np.ndarray, class_names: list[str],
                    specimens: list[str] | None, meta: Mapping[str, Any], dim: int,
                    block: int = 4096) -> tuple[Embeddings, list[tuple[str, str]]]:
        """Write the finished store for exactly ``fingerprints`` (in that order) and drop the chunks.

        Files without features (unreadable) are left out of the store and
        returned as (path, reason). Memory use is bounded by ``block`` rows.
        """
        sources, skipped_cache = self._sources()
        where = _locate(sources, fingerprints)
        keep = [i for i, w in enumerate(where) if w is not None]
        skipped = [(fingerprints[i], skipped_cache.get(fingerprints[i], "not extracted (interrupted?)"))
                   for i, w in enumerate(where) if w is None]

        # nothing changed: the finished store already is exactly this
        unchanged = (
            self.finished() and len(sources) == 1 and len(keep) == len(sources[0].rows)
            and all(where[i] == (0, j) for j, i in enumerate(keep))
        )
        if not unchanged:
            self._preserve_finished()
            sources, _ = self._sources()
            where = _locate(sources, fingerprints)
            for name in (META_FILE, INDEX_FILE):
                try:
                    os.unlink(self.folder / name)
                except FileNotFoundError:
                    pass
            tmp = self.folder / f".{FEATURES_FILE}.tmp"
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(keep), dim))
            for start in range(0, len(keep), block):
                rows = keep[start:start + block]
                for k, i in enumerate(rows):
                    si, r = where[i]
                    out[start + k] = sources[si].features[r]
            out.flush()
            del out
            os.replace(tmp, self.folder / FEATURES_FILE)

        index = pd.DataFrame({
            "path": [fingerprints[i][0] for i in keep],
            "label": labels[keep] if len(keep) else np.zeros(0, np.int64),
            "class_name": [class_names[labels[i]] if labels[i] >= 0 else "" for i in keep],
            "specimen": [specimens[i] for i in keep] if specimens is not None else [""] * len(keep),
            "file_size": [fingerprints[i][1] for i in keep],
            "mtime_ns": [fingerprints[i][2] for i in keep],
        })
        skipped_table = pd.DataFrame([(p, s, m, r) for (p, s, m), r in skipped],
                                     columns=["path", "file_size", "mtime_ns", "reason"])
        full_meta = dict(meta)
        full_meta.update(class_names=list(class_names), n_images=len(keep), n_skipped=len(skipped), dim=dim,
                         has_specimens=specimens is not None, settings=self.settings)
        atomic_write_text(self.folder / INDEX_FILE, index.to_csv(index=False))
        atomic_write_text(self.folder / SKIPPED_CACHE, skipped_table.to_csv(index=False))
        atomic_write_text(self.folder / META_FILE, json.dumps(_jsonable(full_meta), indent=2))
        if self.chunk_dir.exists():
            shutil.rmtree(self.chunk_dir, ignore_errors=True)
        self._next_chunk = 0
        return read_store(self.folder), [(fp[0], r) for fp, r in skipped]


def _locate(sources: list[_Source], fingerprints: Sequence[Fingerprint]) -> list[tuple[int, int] | None]:
    """(source, row) of each fingerprint; later sources win, as they are newer."""
    where: list[tuple[int, int] | None] = []
    for fp in fingerprints:
        loc = None
        for si in range(len(sources) - 1, -1, -1):
            r = sources[si].rows.get(fp)
            if r is not None:
                loc = (si, r)
                break
        where.append(loc)
    return where


def fingerprint(rel_path: str, path: Path) -> Fingerprint | None:
    """(relative path, size in bytes, mtime in ns), or None when the file cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (rel_path, int(st.st_size), int(st.st_mtime_ns))

