"""Checksum verification (Flyway's `validate`): the SQL files of every applied
revision, as recorded at apply, against the files on disk now."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .session import RevisionFiles

if TYPE_CHECKING:
    import psycopg


@dataclass
class FileCheck:
    revision: str
    file: str
    recorded: str | None
    current: str | None
    revision_recorded: bool = True

    @property
    def status(self) -> str:
        if not self.revision_recorded:
            return "unrecorded"
        if self.recorded is None:
            # e.g. a self-test written after the revision was applied: it
            # changes nothing that ran, so it is reported, not failed
            return "added"
        if self.current is None:
            return "missing"
        return "ok" if self.recorded == self.current else "changed"

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "file": self.file, "status": self.status,
                "recorded": self.recorded, "current": self.current}


@dataclass
class VerifyReport:
    applied: list[str]
    files: list[FileCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[FileCheck]:
        return [f for f in self.files if f.status not in ("ok", "added")]

    @property
    def ok(self) -> bool:
        return not self.problems

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

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "applied": self.applied, "files": [f.to_json() for f in self.files],
                "problems": [f.to_json() for f in self.problems]}


def applied_chain(project: Path, heads: list[str]) -> list[str]:
    from .migrate import script_directory

    if not heads:
        return []
    script = script_directory(project)
    revs: list[str] = []
    for head in heads:
        revs += [r.revision for r in reversed(list(script.iterate_revisions(head, "base")))]
    return list(dict.fromkeys(revs))


def verify(conn: psycopg.Connection[Any], project: Path) -> VerifyReport:
    """Each applied revision's files against the checksums of its latest real apply
    (or of the `db adopt` that vouched for it; a `db stamp` vouches for nothing)."""
    from .fingerprint import current_heads

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
        now = RevisionFiles(project, rev).checksums()
        then = recorded.get(rev)
        if then is None:
            for rel, sha in sorted(now.items()):
                report.files.append(FileCheck(rev, rel, None, sha, revision_recorded=False))
            continue
        for rel in sorted(set(then) | set(now)):
            report.files.append(FileCheck(rev, rel, then.get(rel), now.get(rel)))
    return report
