"""The project layout, in one place: where a revision's files are, and the revision graph.

A project is a directory with `alembic.ini`, `migrations/env.py`,
`migrations/versions/<rev>.py` (the graph: `revision`, `down_revision`, the
inventory declaration), `migrations/sql/<rev>.sql` (forward), `rollbacks/<rev>.sql`
and `selftests/<rev>.sql` + `.expected`. Every path to one of a revision's files
comes from `RevisionFiles`; the graph is read through Alembic's ScriptDirectory
(`script_directory`, cached per process), or without importing the revision
modules by `revision_graph`, for the reads that must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, UnknownRevision
from .sqlfiles import checksum

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def versions_dir(project: Path) -> Path:
    """Where the revision modules (the graph and the declarations) are."""
    return project / "migrations" / "versions"


@dataclass
class RevisionFiles:
    project: Path
    revision: str

    @property
    def module(self) -> Path:
        return versions_dir(self.project) / f"{self.revision}.py"

    @property
    def forward(self) -> Path:
        return self.project / "migrations" / "sql" / f"{self.revision}.sql"

    @property
    def rollback(self) -> Path:
        return self.project / "rollbacks" / f"{self.revision}.sql"

    @property
    def selftest(self) -> Path:
        return self.project / "selftests" / f"{self.revision}.sql"

    @property
    def expected(self) -> Path:
        """The self-test's recorded transcript."""
        return self.project / "selftests" / f"{self.revision}.expected"

    def checksums(self) -> dict[str, str]:
        """sha256 of each of the revision's files that exists, keyed by relative path.

        Taken over the text psql runs (`\\ir` includes expanded): moving SQL into an
        included file changes nothing here, editing what runs does.
        """
        out = {}
        for p in (self.forward, self.rollback, self.selftest):
            if p.is_file():
                out[str(p.relative_to(self.project))] = checksum(p, self.project)
        return out


def alembic_config(project: Path) -> Config:
    from alembic.config import Config

    cfg = Config(str(project / "alembic.ini"))
    cfg.set_main_option("script_location", str(project / "migrations"))
    return cfg


_SCRIPTS: dict[tuple[str, tuple[tuple[str, int], ...]], ScriptDirectory] = {}


def script_directory(project: Path) -> ScriptDirectory:
    """The project's revisions, loaded once per process while their files are unchanged.

    Alembic imports every revision module each time a ScriptDirectory is
    built; a process that runs several commands (tests, the demo, the proof)
    would otherwise pay that for every one.
    """
    from alembic.script import ScriptDirectory

    versions = versions_dir(project)
    key = (str(project.resolve()),
           tuple(sorted((f.name, f.stat().st_mtime_ns) for f in versions.glob("*.py"))))
    script = _SCRIPTS.get(key)
    if script is None:
        script = ScriptDirectory.from_config(alembic_config(project))
        _SCRIPTS.clear() if len(_SCRIPTS) > 32 else None
        _SCRIPTS[key] = script
    return script


def check_revision(script: ScriptDirectory, rev: str) -> None:
    from alembic.util import CommandError

    if ":" in rev:
        raise BadInput(f"{rev!r}: a range FROM:TO is for --sql (an offline script); online, iucore reads "
                       "where the database is and takes REVISION alone")
    if rev in ("head", "heads", "base") or (rev[:1] in ("+", "-") and rev[1:].isdigit()):
        return
    try:
        found = script.get_revisions(rev)
    except CommandError:
        raise UnknownRevision(_unknown(script, rev), revision=rev) from None
    if not found:
        raise UnknownRevision(_unknown(script, rev), revision=rev)


def valid_targets(project: Path, heads: list[str]) -> tuple[list[str], list[str]]:
    """(upgrade, downgrade) destinations from a database at `heads`, nearest first."""
    script = script_directory(project)
    order = [r.revision for r in reversed(list(script.walk_revisions()))]
    try:
        applied = applied_chain(project, heads)
    except Exception:  # a position the scripts do not know: nothing is a valid step from it
        return [], []
    pending = [r for r in order if r not in applied]
    ups = [*pending, "head"] if pending else []
    downs = [r for r in reversed(applied) if r not in heads] + (["base"] if heads else [])
    return ups, downs


def below(project: Path, destination: str, heads: list[str]) -> bool:
    """Whether DESTINATION is strictly below the position `heads` (an upgrade to it is a downgrade)."""
    if destination in ("head", "heads", "base") or destination[:1] in ("+", "-") or not heads:
        return False
    try:
        wanted = {r.revision for r in script_directory(project).get_revisions(destination) if r}
    except Exception:  # unresolvable: Alembic's own resolution says so
        return False
    return bool(wanted) and wanted <= set(applied_chain(project, heads)) - set(heads)


def _unknown(script: ScriptDirectory, rev: str) -> str:
    known = [r.revision for r in reversed(list(script.walk_revisions()))]
    return f"unknown revision {rev!r}; known revisions: {', '.join(known) or '(none)'}"


def applied_chain(project: Path, heads: list[str]) -> list[str]:
    if not heads:
        return []
    script = script_directory(project)
    revs: list[str] = []
    for head in heads:
        revs += [r.revision for r in reversed(list(script.iterate_revisions(head, "base")))]
    return list(dict.fromkeys(revs))


def revision_graph(project: Path) -> dict[str, tuple[str, ...]]:
    """{revision: down revisions}, read from the revision files without importing them.

    `db current` is a read: it must not pay for importing Alembic and every
    revision module (the runs themselves go through Alembic).
    """
    import ast

    graph: dict[str, tuple[str, ...]] = {}
    for path in sorted(versions_dir(project).glob("*.py")):
        values: dict[str, Any] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and node.targets[0].id in ("revision", "down_revision"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
        if "revision" in values:
            down = values.get("down_revision")
            graph[values["revision"]] = tuple(down) if isinstance(down, list | tuple) else ((down,) if down else ())
    return graph
