"""Shared machinery of the benchmark suite: the server, databases, timers, the table.

Nothing here is timed itself; it only sets the scene for bench/cases.py.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from iu_core.config import RunOptions
from iu_core.framework import migrate
from iu_core.pg.server import EmbeddedServer, bin_dir
from iu_core.pg.target import Target

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv that runs the bench: iucore and alembic live here

# One dry-run route attempt per outbox event, as the worker writes them with delivery off:
# how a grown database gets its iu_route_attempt rows.
ATTEMPT_PER_EVENT = """
INSERT INTO public.iu_route_attempt (route_code, event_id, attempt_status, detail)
SELECT 'iu_outbound_default', e.event_id, 'dry_run', jsonb_build_object('reason', 'delivery_disabled', 'mode', 'dry_run')
  FROM public.event_outbox e
"""


def executable(name: str) -> str:
    """An entry point of the running venv (iucore, alembic), else from PATH."""
    p = BIN / name
    if p.is_file():
        return str(p)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"bench: {name} not found beside {sys.executable} nor on PATH")
    return found


# ---------------------------------------------------------------- statistics
# What the table reports of each set of samples: "best" (the minimum: on a shared
# machine, load only ever adds time, so the minimum is the steadiest estimate of
# the cost itself) or "median". run.py sets it from --stat.
STATISTIC = "best"


@dataclass
class Samples:
    """Repeated measurements of one thing, in seconds."""

    label: str
    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def best(self) -> float:
        return min(self.values)

    @property
    def value(self) -> float:
        return self.best if STATISTIC == "best" else self.median

    def summary(self, scale: float = 1000.0, unit: str = "ms") -> str:
        vals = ", ".join(f"{v * scale:.1f}" for v in self.values)
        return (f"{self.label}: median {self.median * scale:.1f} {unit}, best {self.best * scale:.1f}, "
                f"worst {max(self.values) * scale:.1f} ({vals})")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


TIMES = "\u00d7"  # the multiplication sign, kept out of the source as a literal


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


# ---------------------------------------------------------------- results
@dataclass
class Row:
    benchmark: str
    iucore: float  # seconds (median)
    baseline: float  # seconds (median)
    baseline_label: str
    target: float  # a ratio (kind "ratio") or seconds (kind "absolute"); unused for "info"
    kind: str  # ratio | absolute | info (a cost shown for scale, no target)
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.iucore / self.baseline if self.baseline else float("inf")

    @property
    def passed(self) -> bool:
        if self.kind == "info":
            return True
        value = self.ratio if self.kind == "ratio" else self.iucore
        return value <= self.target

    def cells(self) -> list[str]:
        target = (f"≤ {self.target:g}{TIMES}" if self.kind == "ratio" else "(none)" if self.kind == "info"
                  else f"≤ {fmt_time(self.target)}")
        return [
            self.benchmark,
            fmt_time(self.iucore),
            f"{fmt_time(self.baseline)} ({self.baseline_label})",
            f"{self.ratio:.2f}{TIMES}",
            target,
            "info" if self.kind == "info" else "PASS" if self.passed else "**MISS**",
        ]


def markdown_table(rows: Sequence[Row]) -> str:
    head = ["benchmark", "iucore", "baseline", "ratio", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- machine facts
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts(pg_version: str) -> dict[str, str]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo").splitlines()
                if ln.startswith("model name")), platform.processor() or platform.machine())
    mem_kb = next((int(ln.split()[1]) for ln in _read("/proc/meminfo").splitlines()
                   if ln.startswith("MemTotal:")), 0)
    os_name = next((ln.split("=", 1)[1].strip().strip('"') for ln in _read("/etc/os-release").splitlines()
                    if ln.startswith("PRETTY_NAME=")), platform.system())
    return {
        "CPU": f"{cpu} ({platform.machine()})",
        "cores": str(os.cpu_count()),
        "RAM": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "OS": f"{os_name}, Linux {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()} ({sys.prefix})",
        "PostgreSQL": pg_version,
    }


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ---------------------------------------------------------------- the server
class BenchServer:
    """An embedded server of one major in a temporary IUCORE_HOME, default durability."""

    def __init__(self, major: int) -> None:
        self.major = major
        # Short path: the unix socket lives in it.
        self.home = Path(tempfile.mkdtemp(prefix="iucore-bench-"))
        # No settings: fsync, synchronous_commit and full_page_writes keep their defaults (on).
        self.server = EmbeddedServer(home=self.home, major=major)
        self.admin: psycopg.Connection[Any] | None = None
        self._seq = 0

    def start(self) -> None:
        os.environ["IUCORE_HOME"] = str(self.home)  # nothing may touch ./.iucore
        self.server.ensure_running()
        self.admin = psycopg.connect(self.server.url("postgres"), autocommit=True)

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.close()
        self.server.destroy()
        shutil.rmtree(self.home, ignore_errors=True)

    @property
    def bin(self) -> Path:
        return bin_dir(self.major)

    def url(self, db: str) -> str:
        return self.server.url(db)

    def target(self, db: str) -> Target:
        return Target.parse(self.url(db))

    def connect(self, db: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(db), autocommit=True)

    def setting(self, name: str) -> str:
        assert self.admin is not None
        row = self.admin.execute("SELECT current_setting(%s)", (name,)).fetchone()
        return str(row[0]) if row else "?"

    def version(self) -> str:
        assert self.admin is not None
        row = self.admin.execute("SELECT version()").fetchone()
        return str(row[0]).split(" on ")[0] if row else "?"

    def create(self, prefix: str, template: str = "template0") -> str:
        assert self.admin is not None
        self._seq += 1
        name = f"{prefix}_{self._seq}"
        self.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop(self, name: str) -> None:
        assert self.admin is not None
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def database(self, prefix: str, template: str = "template0") -> Iterator[str]:
        name = self.create(prefix, template)
        try:
            yield name
        finally:
            self.drop(name)

    def migrate_to_head(self, name: str) -> None:
        """In-process, untimed: build a database at head (a template for the later benchmarks)."""
        migrate.upgrade(self.target(name), "head", project=ROOT, options=RunOptions(actor="bench-setup"))


# ---------------------------------------------------------------- processes
def run_process(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Run a real subprocess from the repository root; (wall seconds, result). Fails loudly.

    The child's CPU time (user + sys, the client side only: the server's work is
    in its backends) is kept in `result.cpu_seconds` for the run log.
    """
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(list(argv), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc.cpu_seconds = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)  # type: ignore[attr-defined]
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-8:]
        raise RuntimeError(f"bench: {' '.join(argv[:4])}… exited {proc.returncode}:\n  " + "\n  ".join(tail))
    return elapsed, proc


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "IUCORE_DATABASE_URL"}
    env.update(IUCORE_ACTOR="bench", PYTHONUNBUFFERED="1", **extra)
    return env
