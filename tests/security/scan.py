"""Search a database, a folder and log text for secret values, in every form they could be stored:
clear (UTF-8), hex (either case), and base64 at each of the three alignments it can take inside a
longer base64 text (a secret inside a base64-encoded profile or plist <data>)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, select

from mdm.ground.models import Base


def forms(secret: str | bytes) -> dict[str, bytes]:
    """Needle name → bytes to look for."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    found = {"clear": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        # Characters touched by the padding bytes or the unknown neighbours are not part of the needle.
        start = (offset * 8 + 5) // 6
        end = (8 * (offset + len(raw))) // 6
        needle = encoded[start:end]
        if len(needle) >= 8:
            found[f"base64+{offset}"] = needle
            found[f"base64url+{offset}"] = needle.replace(b"+", b"-").replace(b"/", b"_")
    return found


def find_in(data: bytes, secrets: dict[str, str | bytes], where: str) -> list[str]:
    hits = []
    for label, secret in secrets.items():
        for form, needle in forms(secret).items():
            if needle in data:
                hits.append(f"{label} ({form}) in {where}")
    return hits


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    return str(value).encode("utf-8")


def scan_database(engine: Engine, secrets: dict[str, str | bytes]) -> tuple[list[str], int]:
    """Every column of every table (SQLAlchemy metadata) the database has (an older revision lacks
    newer tables and columns); the hits and how many values were read."""
    hits: list[str] = []
    values = 0
    with engine.connect() as conn:
        present = inspect(conn)
        tables = set(present.get_table_names())
        for table in Base.metadata.sorted_tables:
            if table.name not in tables:
                continue
            names = {c["name"] for c in present.get_columns(table.name)}
            columns = [c for c in table.columns if c.name in names]
            for row in conn.execute(select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    values += 1
                    hits.extend(find_in(_as_bytes(value), secrets, f"{table.name}.{column.name}"))
    return hits, values


def file_bytes(path: Path) -> bytes:
    """A file's bytes, read by a child process: closing a descriptor of an SQLite file in this
    process would drop every POSIX lock this process's open connections hold on it."""
    return subprocess.run(["cat", "--", str(path)], capture_output=True, check=True).stdout


def scan_folder(folder: Path, secrets: dict[str, str | bytes]) -> tuple[list[str], int]:
    """Every file under `folder` (the SQLite database bytes included)."""
    hits: list[str] = []
    files = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files += 1
            hits.extend(find_in(file_bytes(path), secrets, str(path)))
    return hits, files


def scan_text(texts: Iterable[str], secrets: dict[str, str | bytes], where: str) -> list[str]:
    return find_in("\n".join(texts).encode("utf-8"), secrets, where)
