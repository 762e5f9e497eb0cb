"""Shards: one extraction split over the tasks of a cluster array job (SLURM, PBS, ``xargs -P``).

``extract_embeddings(..., shard="I/N")`` (``palaeo-ssl extract --shard I/N``) embeds
only the images of shard ``I`` of ``N`` (``0 <= I < N``). An image's shard is a hash
of its path relative to the data root (:func:`shard_of`), so every task computes the
same split without talking to the others, and adding images to the collection
never moves an image from one shard to another.

Every shard process writes its chunks into the same store folder (on a filesystem
all tasks see); chunk names carry the shard and a random token, and a chunk
appears through an atomic rename, so the tasks need no lock and no coordinator.
A shard resumes on its own (rerun the same task: it computes only its images the
store lacks) and never consolidates. Each records its progress in
``<store>/shards/shard-IIII-of-NNNN.json``; a later run without ``shard``
consolidates everything and computes what is still missing, and any command that
meets a store whose shards have not been consolidated says which are incomplete
(:func:`unconsolidated_message`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cache import atomic_write_json, read_json
from .params import ParameterError, shown
from .report import now_iso, peak_rss_mb
from .store import CHUNK_DIR, SHARD_DIR

log = logging.getLogger(__name__)

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_TAG = re.compile(r"^chunk_s(\d+)of(\d+)-")


def parse_shard(value: Any) -> tuple[int, int] | None:
    """``"I/N"`` or ``(I, N)`` -> ``(I, N)`` with ``0 <= I < N``; None stays None.

    Raises :class:`~palaeo_ssl.params.ParameterError` (parameter ``shard``) otherwise.
    """
    if value is None:
        return None
    i = n = None
    if isinstance(value, str):
        m = _SPEC.match(value)
        if m:
            i, n = int(m.group(1)), int(m.group(2))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        i, n = int(value[0]), int(value[1])
    if i is None or n is None or not (n >= 1 and 0 <= i < n):
        raise ParameterError("shard", "{name} must be I/N with N >= 1 and 0 <= I < N (shards are numbered from 0, "
                                      "like SLURM_ARRAY_TASK_ID with --array=0-(N-1)), not " + shown(value))
    return i, n


def shard_of(rel_path: str, n_shards: int) -> int:
    """The shard (0 .. n_shards-1) of the image at ``rel_path`` (relative to the data root, ``/``-separated).

    A hash of the path alone: the same on every machine and Python, and independent
    of the other images, so adding images never moves one from shard to shard.
    """
    digest = hashlib.blake2b(str(rel_path).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % int(n_shards)


def shard_tag(i: int, n: int) -> str:
    """The writer name of shard ``i`` of ``n`` in chunk file names: ``s0002of0004``."""
    return f"s{i:04d}of{n:04d}"


def _progress_path(store_folder: Path, i: int, n: int) -> Path:
    return Path(store_folder) / SHARD_DIR / f"shard-{i:04d}-of-{n:04d}.json"


def record_start(store_folder: Path, shard: tuple[int, int], assigned: int, todo: int) -> None:
    """Record that shard ``shard`` started: ``assigned`` images are its own, ``todo`` of them still lacked features."""
    i, n = shard
    path = _progress_path(store_folder, i, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"shard": i, "n_shards": n, "assigned": assigned, "todo_at_start": todo,
                             "complete": False, "host": socket.gethostname(), "started": now_iso()})


def record_done(store_folder: Path, shard: tuple[int, int], computed: int, skipped: int) -> None:
    """Mark shard ``shard`` complete (all its images have features or are listed as unreadable)."""
    i, n = shard
    path = _progress_path(store_folder, i, n)
    rec = read_json(path) or {"shard": i, "n_shards": n}
    rec.update(complete=True, computed=computed, skipped=skipped, finished=now_iso())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, rec)


@dataclass
class ShardState:
    """What one shard of a store has done, from its progress record and its chunks."""

    shard: int
    n_shards: int
    started: bool
    complete: bool
    assigned: int | None = None
    todo_at_start: int | None = None
    rows_written: int = 0  # rows (features or unreadable files) in this shard's unconsolidated chunks

    def describe(self) -> str:
        name = f"{self.shard}/{self.n_shards}"
        if not self.started:
            return f"{name} not started"
        if self.complete:
            return f"{name} complete"
        return (f"{name} incomplete ({self.rows_written} of the {self.todo_at_start} images it had to embed "
                f"are written)")


def shard_states(store_folder: Path) -> list[ShardState]:
    """The state of every shard recorded in ``store_folder`` (sorted; shards never started included)."""
    folder = Path(store_folder)
    records = [r for p in sorted((folder / SHARD_DIR).glob("shard-*-of-*.json")) if (r := read_json(p))]
    if not records:
        return []
    written: dict[tuple[int, int], int] = {}
    for marker in (folder / CHUNK_DIR).glob("chunk_s*.csv"):
        m = _TAG.match(marker.name)
        if m:
            key = (int(m.group(1)), int(m.group(2)))
            try:
                with open(marker, "rb") as fh:
                    written[key] = written.get(key, 0) + max(0, sum(1 for _ in fh) - 1)
            except OSError:
                pass
    states: list[ShardState] = []
    for n in sorted({int(r["n_shards"]) for r in records}):
        by_i = {int(r["shard"]): r for r in records if int(r["n_shards"]) == n}
        for i in range(n):
            r = by_i.get(i)
            states.append(ShardState(
                shard=i, n_shards=n, started=r is not None, complete=bool(r and r.get("complete")),
                assigned=r.get("assigned") if r else None, todo_at_start=r.get("todo_at_start") if r else None,
                rows_written=written.get((i, n), 0)))
    return states


def incomplete(store_folder: Path) -> list[ShardState]:
    """The shards of ``store_folder`` that have not finished (never started, or stopped part-way)."""
    return [s for s in shard_states(store_folder) if not s.complete]


def unconsolidated_message(store_folder: Path) -> str | None:
    """A sentence about shards that wrote into ``store_folder`` but were not consolidated yet, or None."""
    states = shard_states(store_folder)
    if not states:
        return None
    todo = [s for s in states if not s.complete]
    n = states[0].n_shards
    head = (f"the embedding store {Path(store_folder).name} holds shards that were not consolidated yet "
            f"({len(states) - len(todo)} of {n} complete")
    if todo:
        head += "; incomplete: " + ", ".join(s.describe() for s in todo[:20]) + (" ..." if len(todo) > 20 else "")
    return head + ("). Rerun the incomplete shards, or " if todo else "). ") + (
        "run 'palaeo-ssl extract DATA --out OUT' without --shard (same options) to consolidate them: it "
        "computes whatever is still missing")


def warn_if_incomplete(store_folder: Path) -> list[ShardState]:
    """Log which shards a consolidating run is about to finish itself; return them."""
    todo = incomplete(store_folder)
    if todo:
        log.warning("%d shard(s) had not finished (%s); their missing images are computed by this run",
                    len(todo), ", ".join(s.describe() for s in todo[:10]) + (" ..." if len(todo) > 10 else ""))
    return todo


# ---------------------------------------------------------------------- what a shard run returns
@dataclass
class ShardSummary:
    """What one shard run did. Nothing is consolidated: a run without ``shard`` does that."""

    store: str
    shard: int
    n_shards: int
    assigned: int
    computed: int
    reused: int
    skipped: int
    seconds: float
    images_per_second: float
    peak_ram_mb: float
    device: str
    still_incomplete: list[str]

    def text(self) -> str:
        lines = [
            f"store:    {self.store}",
            f"shard:    {self.shard}/{self.n_shards}: {self.assigned} images ({self.computed} computed now, "
            f"{self.reused} already there, {self.skipped} unreadable)",
            f"time:     {self.seconds:.1f} s" + (f", {self.images_per_second:.1f} images/s" if self.computed else ""),
            f"peak RAM: {self.peak_ram_mb:.0f} MB (this process)",
            f"device:   {self.device}",
        ]
        if self.still_incomplete:
            lines.append("not finished yet: shard " + ", ".join(self.still_incomplete[:20])
                         + (" ..." if len(self.still_incomplete) > 20 else ""))
            lines.append("when every shard has finished, run the same command without --shard to consolidate")
        else:
            lines.append("every shard has finished: run the same command without --shard to consolidate")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def finish_shard(plan: Any, shard: tuple[int, int], assigned: int, computed: int, extract_seconds: float,
                 t0: float) -> ShardSummary:
    """After a shard's images are embedded: mark it complete and say what it did (no consolidation).

    ``plan`` is the extraction's plan for this shard: its ``fps`` are the shard's images only.
    """
    have, cached_skips = plan.store.lookup()
    mine = plan.fps
    missing = [fp for fp in mine if fp not in have and fp not in cached_skips]
    skipped = sum(1 for fp in mine if fp in cached_skips)
    if not missing:
        record_done(plan.store.folder, shard, computed, skipped)
    others = [f"{s.shard}/{s.n_shards}" for s in shard_states(plan.store.folder) if not s.complete]
    return ShardSummary(
        store=str(plan.store.folder), shard=shard[0], n_shards=shard[1], assigned=assigned, computed=computed,
        reused=assigned - computed - skipped, skipped=skipped, seconds=time.perf_counter() - t0,
        images_per_second=computed / extract_seconds if extract_seconds > 0 else 0.0,
        peak_ram_mb=peak_rss_mb(), device=str(plan.device), still_incomplete=others)


__all__ = ["ShardState", "ShardSummary", "finish_shard", "incomplete", "parse_shard", "record_done",
           "record_start", "shard_of", "shard_states", "shard_tag", "unconsolidated_message", "warn_if_incomplete"]
