"""`iucore db adopt REV`: take over a database the chain was applied to by hand.

Production got substrate … gate_protocol through `psql -v ON_ERROR_STOP=1`
(seeds 002 to 004), before iucore existed: no alembic_version, no audit. Adopt
proves that the database is exactly the chain at REV, then records it:

1. under the migration advisory lock, with the run's timeouts;
2. refuses a database iucore already manages (a version row in
   iucore.alembic_version): `db current`, `db verify` and `db upgrade` are
   the tools there;
3. checks, object by object, against the revision files' declarations:
   every table, view and trigger REV declares is present by name, every
   function by its full signature; the command catalog equals the
   registry's governed commands at REV, row for row; the gate keys are
   present, every governable gate closed and never-flip false; nothing a
   later revision declares (objects or catalog rows) is present; no
   IU-Core-named object outside the chain unless acknowledged
   (acknowledged.toml); and, for a revision that replaces functions in
   place (its module says `adopt_runs_postcheck = True`), REV's own
   post-check, since no declared object proves what it replaced;
4. any difference: refuses (exit 3) naming each one, changes nothing, and
   leaves a `refused` audit row with the evidence;
5. otherwise, in ONE transaction: REV in iucore.alembic_version and one
   `adopted` audit row per revision from base to REV, each with the sha256
   of its files (so `db verify` holds them to what was vouched for), the
   REV row with the whole evidence and the acknowledgements relied on.

`--rehearse` does all of it, then rolls back and proves the catalog
fingerprint and alembic_version unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunOptions
from ..domain.registry import COMMANDS, catalog_row
from ..errors import AdoptRefused, BadInput, Failed, RehearsalLeak
from ..framework import audit
from ..framework.declarations import CLASSES
from ..framework.fingerprint import current_heads, diff, fingerprint, snapshot
from ..framework.layout import RevisionFiles, check_revision, script_directory
from ..framework.observe import revision_files
from ..framework.runner import execute
from ..framework.session import MigrationSession
from ..framework.sqlfiles import MIGRATION_SECTIONS, parse_script, shown
from ..framework.transcript import Sink
from ..pg.db import connect
from ..pg.target import Target
from .inventory import compare
from .preflight import check_gates as gates

if TYPE_CHECKING:
    import psycopg

    from .inventory import Report

# Alembic's own version table (what `alembic upgrade` creates), in iucore's schema.
VERSION_DDL = (f"CREATE TABLE IF NOT EXISTS {audit.SCHEMA}.{audit.VERSION_TABLE} ("
               "version_num VARCHAR(32) NOT NULL, "
               "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")


@dataclass
class Check:
    name: str
    differences: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": "PASS" if self.ok else "FAIL", "detail": self.detail,
                "differences": self.differences}


@dataclass
class AdoptResult:
    run_id: str
    target: str
    revision: str
    mode: str
    chain: list[str]
    checks: list[Check]
    acknowledged: list[dict[str, Any]]
    checksums: dict[str, dict[str, str]]
    fingerprint_before: str | None = None
    fingerprint_after: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "target": self.target, "revision": self.revision,
                "mode": self.mode, "outcome": "rehearsed" if self.mode == "rehearsal" else "adopted",
                "vouched_for": self.chain, "checks": [c.to_json() for c in self.checks],
                "acknowledged": self.acknowledged, "checksums": self.checksums,
                "fingerprint_before": self.fingerprint_before, "fingerprint_after": self.fingerprint_after}


def _resolve(project: Path, revision: str) -> tuple[str, list[str], list[str]]:
    """(revision id, base → REV, the revisions after it)."""
    script = script_directory(project)
    if revision == "base" or revision[:1] in ("+", "-"):
        raise BadInput(f"adopt needs the revision the database is at (e.g. 034 or head), not {revision!r}",
                       revision=revision)
    check_revision(script, revision)
    rev = script.get_revision(revision)
    if rev is None:
        raise BadInput(f"adopt needs one revision, got {revision!r}", revision=revision)
    chain = [r.revision for r in reversed(list(script.iterate_revisions(rev.revision, "base")))]
    later = [r.revision for r in reversed(list(script.walk_revisions())) if r.revision not in chain]
    return rev.revision, chain, later


def check_objects(rep: Report, rev: str, later: list[str]) -> list[Check]:
    """Declared objects present; nothing of a later revision; no unacknowledged IU-Core-named extra."""
    present = Check(f"objects declared at {rev} present (functions by full signature)")
    later_objs = Check("nothing of a later revision present")
    extras = Check("no IU-Core-named object outside the chain unless acknowledged")
    for cls in CLASSES:
        for name in rep.missing(cls):
            present.differences.append(f"missing {cls} {name}{rep.missing_note(cls, name)}")
        for name in rep.unacknowledged(cls):
            by = rep.declared_by.get((cls, name))
            if by in later:
                later_objs.differences.append(f"{cls} {name} (revision {by}) is present")
            elif by is not None:  # declared earlier and removed since: should not be here
                present.differences.append(f"extra {cls} {name} (declared by {by}, removed since)")
            elif cls == "function" and any(
                    n.split("(", 1)[0] == name.split("(", 1)[0] for n in rep.missing(cls)):
                continue  # reported above as a wrong signature
            else:
                extras.differences.append(f"extra {cls} {name} (IU-Core-named, not in the chain, "
                                          "not acknowledged in acknowledged.toml)")
    n = sum(len(rep.expected[c]) for c in CLASSES)
    present.detail = f"{n - sum(len(rep.missing(c)) for c in CLASSES)}/{n} declared objects present"
    later_objs.detail = "no object of a later revision" if later_objs.ok else ""
    acked = rep.acknowledged_extras
    extras.detail = (f"{len(acked)} acknowledged: " + ", ".join(f"{a.cls} {a.name}" for a in acked)
                     if acked else "none")
    return [present, later_objs, extras]


def check_catalog(conn: psycopg.Connection[Any], rev: str, chain: list[str], later: list[str],
                  later_check: Check) -> Check:
    """dot_iu_command_catalog equals the registry's governed commands at REV, row for row."""
    check = Check(f"command catalog equals the registry at {rev}")
    want = {c.name: catalog_row(c) for c in COMMANDS if c.governed and c.revision in chain}
    if conn.execute("SELECT to_regclass('public.dot_iu_command_catalog')").fetchone() == (None,):
        check.differences.append("table public.dot_iu_command_catalog is missing")
        return check
    got = {r[0]: (r[0], r[1], r[2], r[3], tuple(r[4])) for r in conn.execute(
        "SELECT command_name, category, mutating, reversible, target_functions"
        " FROM public.dot_iu_command_catalog")}
    by_rev = {c.name: c.revision for c in COMMANDS}
    for name in sorted(set(want) - set(got)):
        check.differences.append(f"catalog row {name} (revision {by_rev[name]}) is missing")
    for name in sorted(set(want) & set(got)):
        if want[name] != got[name]:
            check.differences.append(f"catalog row {name} differs: {got[name][1:]} in the database, "
                                     f"{want[name][1:]} in the registry")
    for name in sorted(set(got) - set(want)):
        if by_rev.get(name) in later:
            later_check.differences.append(f"catalog row {name} (revision {by_rev[name]}) is present")
        else:
            check.differences.append(f"catalog row {name} is not in the registry")
    check.detail = f"{len(set(want) & set(got))}/{len(want)} rows as registered"
    return check


def check_postcheck(conn: psycopg.Connection[Any], project: Path, rev: str) -> Check | None:
    """REV's own post-check, when its module says `adopt_runs_postcheck = True`: what a
    revision replaces in place (worker_pick's worker, least_privilege's hardened functions)
    keeps its name and signature, so no declared object proves it, and the assertions the
    revision makes about its result are the proof. Each statement runs in a savepoint of
    adopt's transaction that is rolled back whatever the statement did: a post-check reads and
    raises, and one that wrote (or SET something) would still leave nothing behind. None when
    REV does not ask for it."""
    import psycopg

    module = script_directory(project).get_revision(rev).module
    if not getattr(module, "adopt_runs_postcheck", False):
        return None
    check = Check(f"{rev}'s post-check holds (what it replaces in place, no declared object proves)")
    files = RevisionFiles(project, rev)
    script = parse_script(files.forward, MIGRATION_SECTIONS, project)
    statements = script.section("postcheck")
    for st in statements:
        try:
            with conn.transaction(force_rollback=True):
                execute(conn, st.sql)
        except psycopg.Error as exc:
            diag = getattr(exc, "diag", None)
            msg = (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]
            check.differences.append(f"{shown(Path(st.file) if st.file else files.forward, project)}:{st.line}: {msg}")
            break
    check.detail = f"{len(statements)} post-check statement(s) of {rev} passed" if check.ok else ""
    return check


def check_gates(conn: psycopg.Connection[Any]) -> Check:
    found = gates(conn)
    return Check("gate keys present; governable gates closed; never-flip false",
                 [] if found.ok else [found.evidence], found.evidence if found.ok else "")


def adopt(target: Target, revision: str, *, project: Path, options: RunOptions,
          sink: Sink | None = None) -> AdoptResult:
    """Prove the database is the chain at REVISION, then record it (see the module doc)."""
    import psycopg  # loaded on first use, as everywhere: `iucore --help` does not pay for it

    rev, chain, later = _resolve(project, revision)
    session = MigrationSession(project=project, target=target, options=options, sink=sink,
                               direction="adopt")
    started = time.time()
    with connect(target, autocommit=False, app=f"iucore:adopt:{session.run_id[:8]}") as conn:
        session.raw = conn
        try:
            session.acquire_lock()
            conn.commit()
            audit.bootstrap(conn)
            conn.commit()
            say = sink or (lambda _line: None)
            say(f"== adopt {rev}{' (rehearsal: will ROLLBACK)' if options.rehearse else ''}: "
                f"checking {conn.info.dbname} against {' → '.join(chain)} ==")

            heads = current_heads(conn)
            if heads:
                conn.rollback()
                _refuse(conn, session, rev, started, [
                    f"the database is already managed by iucore: iucore.alembic_version is at "
                    f"{', '.join(heads)}. adopt takes over a database migrated by hand; here use "
                    "`iucore db current`, `db verify` and `db upgrade`"], {"heads": heads})

            snap_before = snapshot(conn, project=project)
            rep = compare(conn, project, rev)
            checks = check_objects(rep, rev, later)
            checks.append(check_catalog(conn, rev, chain, later, checks[1]))
            checks.append(check_gates(conn))
            post = check_postcheck(conn, project, rev)
            checks.extend([post] if post else [])
            acked = [a.to_json() for a in rep.acknowledged_extras]
            checksums = {r: RevisionFiles(project, r).checksums() for r in chain}
            evidence = {
                "revision": rev, "database": conn.info.dbname, "vouched_for": chain,
                "checks": [c.to_json() for c in checks],
                "verified": {cls: sorted(names) for cls, names in rep.expected.items() if names},
                "acknowledged": acked, "checksums": checksums,
                # for `db report`: who, the files vouched for (sha256 and md5), the state adopted
                "observed": session.observe_state([f for r in chain for f in revision_files(project, r)]),
            }
            for c in checks:
                say(f"PASS {c.name}: {c.detail}" if c.ok else f"FAIL {c.name}: {'; '.join(c.differences)}")
                for a in (rep.acknowledged_extras if c.name.startswith("no IU-Core-named") else []):
                    say(f"  acknowledged extra {a.cls} {a.name}: {a.reason} (by {a.by})")
            differences = [d for c in checks for d in c.differences]
            if differences:
                conn.rollback()
                _refuse(conn, session, rev, started, differences, evidence)

            conn.execute(VERSION_DDL)
            conn.execute(f"INSERT INTO {audit.SCHEMA}.{audit.VERSION_TABLE} (version_num) VALUES (%s)", (rev,))
            if not options.rehearse:
                _record_adopted(conn, session, rev, chain, checksums, evidence, started)
                conn.commit()
                say(f"adopted: {rev} recorded as applied ({len(chain)} revision(s) vouched for)")
                return _result(session, rev, chain, checks, acked, checksums)
            conn.rollback()
            say("ROLLBACK")
            snap_after = snapshot(conn, project=project)
            result = _result(session, rev, chain, checks, acked, checksums)
            result.fingerprint_before, result.fingerprint_after = fingerprint(snap_before), fingerprint(snap_after)
            audit.record(conn, run_id=session.run_id, revision=rev, direction="upgrade", mode="rehearsal",
                         outcome="rehearsed", checksums=checksums[rev], actor=options.actor,
                         started_at=started, duration_ms=(time.time() - started) * 1000,
                         message=f"adopt {rev} rehearsed (rolled back)", evidence=evidence)
            conn.commit()
            if result.fingerprint_before != result.fingerprint_after:
                changed = diff(snap_before, snap_after)
                raise RehearsalLeak("adopt rehearsal changed the database: " + "; ".join(changed[:20]),
                                    changed=changed)
            return result
        except psycopg.Error as exc:
            # e.g. a role that may not read a catalog table: say what, never a traceback
            conn.rollback()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Failed(f"adopt {rev} failed: {reason}; nothing was changed", revision=rev) from None
        finally:
            session.release_lock()


def _result(session: MigrationSession, rev: str, chain: list[str], checks: list[Check],
            acked: list[dict[str, Any]], checksums: dict[str, dict[str, str]]) -> AdoptResult:
    return AdoptResult(run_id=session.run_id, target=session.target.display, revision=rev,
                       mode=session.mode, chain=chain, checks=checks, acknowledged=acked,
                       checksums=checksums)


def _record_adopted(conn: psycopg.Connection[Any], session: MigrationSession, rev: str, chain: list[str],
                    checksums: dict[str, dict[str, str]], evidence: dict[str, Any], started: float) -> None:
    duration = (time.time() - started) * 1000
    for r in chain:
        last = r == rev
        audit.record(
            conn, run_id=session.run_id, revision=r, direction="upgrade", mode="real", outcome="adopted",
            checksums=checksums[r], actor=session.options.actor, started_at=started, duration_ms=duration,
            message=(f"adopted at {rev}: every object, catalog row and gate of {' → '.join(chain)} "
                     "verified; no SQL of the chain was run" if last
                     else f"{r}: vouched for by the adoption of {rev} (run {session.run_id})"),
            evidence=evidence if last else {"adopted_with": rev, "run_id": session.run_id},
        )


def _refuse(conn: psycopg.Connection[Any], session: MigrationSession, rev: str, started: float,
            differences: list[str], evidence: dict[str, Any]) -> None:
    """Audit the refusal (its own transaction, after the rollback) and raise."""
    message = (f"adopt {rev} refused: {len(differences)} difference(s): " + "; ".join(differences)
               + ". Nothing was changed")
    audit.record(conn, run_id=session.run_id, revision=rev, direction="upgrade", mode=session.mode,
                 outcome="refused", checksums={}, actor=session.options.actor, started_at=started,
                 duration_ms=(time.time() - started) * 1000, message=message,
                 evidence={**evidence, "differences": differences})
    conn.commit()
    raise AdoptRefused(message, revision=rev, differences=differences)
