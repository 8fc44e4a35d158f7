"""Read an offline W&B run (``run-<id>.wandb``) with W&B's own protobuf definitions.

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, magic ``0xBEE1``, version 0),
then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32 of type byte and data, length,
type: full, first, middle, last); a chunk never straddles a block, and a block's tail shorter
than a header is zero padding. Joined chunks are serialised ``wandb_internal_pb2.Record``
messages. Tests use this to check what a run really logged (images, tables, artifacts,
identity) without a server.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = HEADER.size
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:
            pos += left
            continue
        if pos + CHUNK.size > len(data):
            return
        crc, length, kind = CHUNK.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero padding (end of the written part)
            pos += left
            continue
        body = data[pos + CHUNK.size: pos + CHUNK.size + length]
        if (zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF) != crc:
            raise ValueError(f"W&B record chunk at byte {pos}: checksum mismatch (a corrupt or truncated file)")
        yield kind, body
        pos += CHUNK.size + length


def records(path: str | Path) -> list[Any]:
    """Every ``Record`` of one ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{str(path)!r} is not a W&B run file (header {ident!r}, magic {magic:#x})")
    out, parts = [], b""
    for kind, body in _chunks(data):
        if kind == FULL:
            parts = body
        elif kind == FIRST:
            parts = body
            continue
        elif kind == MIDDLE:
            parts += body
            continue
        else:
            parts += body
        rec = pb.Record()  # type: ignore[attr-defined]
        rec.ParseFromString(parts)
        out.append(rec)
        parts = b""
    return out


def history(recs: list[Any]) -> list[dict[str, Any]]:
    """The run's history rows (``run.log``), values decoded from their JSON."""
    rows = []
    for r in recs:
        if r.WhichOneof("record_type") == "history":
            rows.append({it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in r.history.item})
    return rows


def run_record(recs: list[Any]) -> Any:
    """The first ``run`` record (identity: project, group, job type, tags)."""
    return next(r.run for r in recs if r.WhichOneof("record_type") == "run")


def artifacts(recs: list[Any]) -> list[Any]:
    """The ``artifact`` records (name, type, manifest of files)."""
    return [r.artifact for r in recs if r.WhichOneof("record_type") == "artifact"]


def summary(recs: list[Any]) -> dict[str, Any]:
    """The last value of each summary key (``run.summary``)."""
    out: dict[str, Any] = {}
    for r in recs:
        if r.WhichOneof("record_type") == "summary":
            for it in r.summary.update:
                out[it.key or "/".join(it.nested_key)] = json.loads(it.value_json)
    return out


def config(recs: list[Any]) -> dict[str, Any]:
    """The run's config (the last value of each key)."""
    out: dict[str, Any] = {}
    for r in recs:
        kind = r.WhichOneof("record_type")
        items = r.config.update if kind == "config" else r.run.config.update if kind == "run" else []
        for it in items:
            out[it.key or "/".join(it.nested_key)] = json.loads(it.value_json)
    return out
