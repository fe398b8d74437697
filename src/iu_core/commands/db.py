"""The `iucore db` verbs of release engineering, one library function each: verify (checksums and
the registry's SSOT), preflight, adopt, inventory, report.

The run verbs (upgrade, downgrade, stamp, current, history, backup, selftest) are the
framework's, in `iu_core.framework.migrate`; these add what only IU Core's release needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunOptions, default_actor, find_project_root
from ..framework.checksums import verify as _verify
from ..framework.migrate import reading
from ..framework.transcript import Sink
from ..pg.target import Target
from ..release.adopt import adopt as _adopt
from ..release.inventory import report as _inventory
from ..release.preflight import record as record_preflight
from ..release.preflight import run
from ..release.report import build, render
from ..release.ssot import ssot

NEEDS_INVENTORY = ("inventory reads iucore.alembic_version and the rows of public.dot_config, "
                   "public.event_type_registry and public.iu_outbound_route: GRANT USAGE ON SCHEMA iucore and "
                   "SELECT on those tables to the role, or connect as the migration owner")
NEEDS_PREFLIGHT = ("db preflight is the write identity's checklist: it reads iucore's audit and IU Core's "
                   "tables and probes a write to public.dot_config that it rolls back; run it as the migration "
                   "owner (the role that runs iucore db upgrade), or GRANT that role to this one")


def verify(target: Target, *, project: Path | None = None) -> Any:
    """Checksums recorded at apply against the files on disk (Flyway's validate), and
    the SSOT check: registry ↔ catalog row for row, 280's and 034's seed INSERTs
    re-run inside a rolled-back transaction (INSERT 0 0)."""
    project = project or find_project_root()
    with reading(target) as conn:
        report = _verify(conn, project)
        report.ssot = ssot(conn, project, report.applied)
        return report


def preflight(target: Target, *, project: Path | None = None, actor: str | None = None,
              record: bool = True, **kw: Any) -> Any:
    """The mandatory-gates checklist (read and write identity, server, backup, gates, prior
    surface, drift, checksums, SSOT, the files to apply, lock, long transactions, tools),
    recorded as an audit row so the next run's report shows it (`record=False`: not)."""
    project = project or find_project_root()
    started = time.time()
    with reading(target, NEEDS_PREFLIGHT) as conn:
        rep = run(conn, project, **kw)
        rep.target = target.display
        if record:
            record_preflight(conn, rep, actor=actor or default_actor(), started_at=started)
        return rep


def adopt(
    target: Target,
    revision: str,
    *,
    project: Path | None = None,
    options: RunOptions | None = None,
    sink: Sink | None = None,
) -> Any:
    """Take over a database migrated by hand up to REVISION: prove it object by object, then record it."""
    return _adopt(target, revision, project=project or find_project_root(),
                  options=options or RunOptions(), sink=sink)


def inventory(target: Target, *, project: Path | None = None) -> Any:
    """The DOT inventory of the live database against what the chain declares."""
    project = project or find_project_root()
    with reading(target, NEEDS_INVENTORY) as conn:
        return _inventory(conn, project)


@dataclass
class RunReport:
    """`db report`: one run as recorded (iu_core.release.report); `render()` is its Markdown appendix."""

    data: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def render(self) -> str:
        return render(self.data)

    def to_json(self) -> dict[str, Any]:
        return self.data


def report(target: Target, run_id: str | None = None) -> RunReport:
    """One run (default: the last) as recorded: the data of its evidence appendix (iu_core.release.report)."""
    with reading(target) as conn:
        return RunReport(build(conn, run_id))
