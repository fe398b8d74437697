"""Checksum verification (Flyway's `validate`): the SQL files of every applied
revision, as recorded at apply, against the files on disk now. A project's own
check of the live database (IU Core's: the registry's SSOT, iu_core.release.ssot)
rides along in `VerifyReport.ssot`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import CheckFailed, ChecksumDrift
from .fingerprint import current_heads
from .layout import RevisionFiles, applied_chain

if TYPE_CHECKING:
    import psycopg


class ProjectCheck(Protocol):
    """A check of the live database that `db verify` adds to the files' checksums."""

    @property
    def ok(self) -> bool: ...

    def lines(self) -> list[str]: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class FileCheck:
    revision: str
    file: str
    recorded: str | None
    current: str | None
    revision_recorded: bool = True
    # A migration or rollback file is applied history (DESIGN §3); a self-test is
    # not: it runs in a transaction that always rolls back, so editing it
    # changes nothing that ran.
    ran: bool = True

    @property
    def status(self) -> str:
        if not self.revision_recorded:
            return "unrecorded"
        if self.recorded is None:
            # e.g. a self-test written after the revision was applied: it
            # changes nothing that ran, so it is reported, not failed
            return "added"
        if self.recorded == self.current:
            return "ok"
        if not self.ran:
            # a self-test revised (or removed) since apply: reported, not drift
            return "revised"
        return "missing" if self.current is None else "changed"

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "file": self.file, "status": self.status,
                "recorded": self.recorded, "current": self.current}


@dataclass
class VerifyReport:
    applied: list[str]
    files: list[FileCheck] = field(default_factory=list)
    # `db verify` adds the SSOT check; the upgrade's checksum gate does not.
    ssot: ProjectCheck | None = None

    @property
    def problems(self) -> list[FileCheck]:
        return [f for f in self.files if f.status not in ("ok", "added", "revised")]

    @property
    def ok(self) -> bool:
        return not self.problems and (self.ssot is None or self.ssot.ok)

    def lines(self) -> list[str]:
        out = []
        for f in self.problems:
            if f.status == "changed":
                out.append(f"{f.file} (revision {f.revision}) changed since apply: "
                           f"recorded {f.recorded[:16]}…, now {f.current[:16]}…")  # type: ignore[index]
            elif f.status == "missing":
                out.append(f"{f.file} (revision {f.revision}) is gone (recorded {f.recorded[:16]}…)")  # type: ignore[index]
            else:
                out.append(f"{f.file} (revision {f.revision}): no checksum recorded at apply "
                           "(applied outside iucore?) — cannot verify")
        return out

    def raise_for_outcome(self) -> None:
        """`db verify`'s verdict: ChecksumDrift when an applied file differs from its apply (the
        SSOT problems named too), else CheckFailed when the SSOT does not hold (both exit 4)."""
        ssot_lines = self.ssot.lines() if self.ssot is not None else []
        if self.problems:
            raise ChecksumDrift(f"{len(self.problems)} file(s) differ from what was applied: "
                                + "; ".join(self.lines() + ssot_lines), problems=[f.to_json() for f in self.problems])
        if ssot_lines:
            raise CheckFailed("SSOT check failed: " + "; ".join(ssot_lines),
                              ssot=self.ssot.to_json() if self.ssot is not None else None)

    def to_json(self) -> dict[str, Any]:
        out = {"ok": self.ok, "applied": self.applied, "files": [f.to_json() for f in self.files],
               "problems": [f.to_json() for f in self.problems]}
        if self.ssot is not None:
            out["ssot"] = self.ssot.to_json()
        return out


def verify(conn: psycopg.Connection[Any], project: Path) -> VerifyReport:
    """Each applied revision's files against the checksums of its latest real apply
    (or of the `db adopt` that vouched for it; a `db stamp` vouches for nothing)."""
    applied = applied_chain(project, current_heads(conn))
    recorded: dict[str, dict[str, str]] = {}
    if applied and conn.execute("SELECT to_regclass('iucore.migration_log') IS NOT NULL").fetchone() == (True,):
        for rev, sums in conn.execute(
            """SELECT DISTINCT ON (revision) revision, checksums FROM iucore.migration_log
                WHERE direction = 'upgrade' AND mode = 'real' AND outcome IN ('applied', 'adopted')
                  AND revision = ANY(%s)
                ORDER BY revision, log_id DESC""",
            (applied,),
        ):
            recorded[rev] = sums
    report = VerifyReport(applied=applied)
    for rev in applied:
        files = RevisionFiles(project, rev)
        now = files.checksums()
        selftest = str(files.selftest.relative_to(project))
        then = recorded.get(rev)
        if then is None:
            for rel, sha in sorted(now.items()):
                report.files.append(FileCheck(rev, rel, None, sha, revision_recorded=False))
            continue
        for rel in sorted(set(then) | set(now)):
            report.files.append(FileCheck(rev, rel, then.get(rel), now.get(rel), ran=rel != selftest))
    return report


def _first_line(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    return (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]
