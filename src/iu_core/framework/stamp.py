"""Stamps are audited: `iucore db stamp REV` and plain `alembic stamp REV`.

A stamp writes Alembic's version row and runs no SQL of the chain: nothing is
verified. Both commands leave one `stamped` row in iucore.migration_log (what
was stamped, from where, who, with which command, and that warning), written by
env.py's on_version_apply hook in the same transaction as Alembic's own
version write. `iucore db adopt REV` is the verified way to record a
hand-migrated database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import audit

if TYPE_CHECKING:
    from .session import MigrationSession

WARNING = ("nothing was verified: a stamp records a revision without checking a single object; "
           "`iucore db adopt REV` proves the objects first, and `iucore db verify` will report the "
           "stamped revisions' files as unrecorded")


@dataclass
class StampResult:
    run_id: str
    target: str
    revision: str
    from_heads: list[str]
    to_heads: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not self.rows

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "target": self.target, "revision": self.revision,
                "from": self.from_heads, "to": self.to_heads, "stamped": self.rows,
                "warning": WARNING}


def record_stamp(session: MigrationSession, step: Any, heads: list[str]) -> None:
    """The audit row of one Alembic stamp step (called inside its transaction)."""
    assert session.raw is not None
    source = list(step.source_revision_ids)
    dest = list(step.destination_revision_ids)
    command = "iucore db stamp" if session.direction == "stamp" else "alembic stamp"
    to = ", ".join(dest) or "base"
    audit.record(
        session.raw,
        run_id=session.run_id,
        revision=to,
        direction="upgrade" if step.is_upgrade else "downgrade",
        mode=session.mode,
        outcome="stamped",
        checksums={},
        actor=session.options.actor,
        started_at=time.time(),
        duration_ms=0.0,
        message=f"stamped {to} (from {', '.join(source) or 'base'}) with `{command}`: {WARNING}",
        evidence={"command": command, "stamped": dest, "from": source, "heads_after": heads,
                  "verified": False, "warning": WARNING},
    )
    if session.sink:
        session.sink(f"WARNING: stamped {to} with `{command}`: {WARNING}")
