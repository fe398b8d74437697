"""iucore: guarded, audited, rehearsable migrations for the IU Core database.

With no --url and no IUCORE_DATABASE_URL, iucore starts (on demand) a local
PostgreSQL from a pip-installed wheel, data kept under .iucore/ (or
$IUCORE_HOME).

Exit codes: 0 success; 1 failed (SQL error, post-check failed); 2 usage or bad
input; 3 refused (a guard, gate or lock said no; nothing changed); 4 a check
found a difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import IUCoreError

if TYPE_CHECKING:
    from .config import RunOptions, Target


@dataclass
class Ctx:
    url: str | None
    as_json: bool
    actor: str | None
    project: str | None
    _target: Target | None = None
    emitted: bool = False  # a JSON document went out: an error must not add a second

    def target(self) -> Target:
        if self._target is None:
            from .config import resolve_target

            self._target = resolve_target(self.url)
        return self._target

    def project_root(self) -> Any:
        from .config import find_project_root

        return find_project_root(self.project)

    def emit(self, data: Any, text: str | None = None) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
            self.emitted = True
        elif text is not None:
            click.echo(text)

    def sink(self) -> Any:
        return None if self.as_json else click.echo


class _Group(click.Group):
    """Maps the IUCoreError hierarchy to exit codes, once, at the top."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IUCoreError as exc:
            _report(ctx, exc)
            ctx.exit(exc.exit_code)


def _report(ctx: click.Context, exc: IUCoreError) -> None:
    from .config import redact_url

    obj: Ctx | None = ctx.find_object(Ctx)
    message = redact_url(exc.message)
    if obj is not None and obj.url:
        from .config import split_password

        try:
            pw = split_password(obj.url)[1]
        except ValueError:
            pw = None
        if pw:
            message = message.replace(pw, "***")
    if obj is not None and obj.as_json and not obj.emitted:
        payload = exc.to_json()
        payload["message"] = message
        payload["exit_code"] = exc.exit_code
        click.echo(json.dumps({"ok": False, **payload}, indent=2, default=str, sort_keys=True))
    label = {1: "failed", 2: "error", 3: "refused", 4: "check failed"}.get(exc.exit_code, "error")
    click.echo(f"iucore: {label}: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="IUCORE_DATABASE_URL", help="Target database (default: the embedded server).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--actor", help="Who runs this, recorded in the audit (default: the OS user).")
@click.option("--project", type=click.Path(file_okay=False), help="Project root (default: found from cwd).")
@click.pass_context
def cli(ctx: click.Context, url: str | None, as_json: bool, actor: str | None, project: str | None) -> None:
    """iucore: guarded, audited, rehearsable migrations for the IU Core database.

    With no --url and no IUCORE_DATABASE_URL, an embedded PostgreSQL is started
    on demand (data under .iucore/ or $IUCORE_HOME).

    Exit codes: 0 ok; 1 failed; 2 bad input; 3 refused (nothing changed);
    4 a check found a difference.
    """
    ctx.obj = Ctx(url=url, as_json=as_json, actor=actor, project=project)


# ---------------------------------------------------------------- db
@cli.group(cls=_Group)
def db() -> None:
    """Apply, roll back and inspect revisions."""


def _timeout_options(f: Any) -> Any:
    f = click.option("--lock-wait", help="How long to wait for another run's migration lock [30s].")(f)
    f = click.option("--statement-timeout", help="statement_timeout for the run [60s].")(f)
    f = click.option("--lock-timeout", help="lock_timeout for the run [5s].")(f)
    return f


def _options(obj: Ctx, rehearse: bool, lock_timeout: str | None, statement_timeout: str | None,
             lock_wait: str | None) -> RunOptions:
    from .config import options_from_ini

    opts = options_from_ini(
        obj.project_root() / "alembic.ini",
        lock_timeout=lock_timeout, statement_timeout=statement_timeout, lock_wait=lock_wait,
    ).with_(rehearse=rehearse)
    return opts.with_(actor=obj.actor) if obj.actor else opts


def _print_run(obj: Ctx, result: Any) -> None:
    if obj.as_json:
        obj.emit(result.to_json())
        return
    if result.nothing_to_do:
        at = ", ".join(result.to_heads) or "base (empty)"
        click.echo(f"iucore: nothing to do: already at {at}")
        return
    verb = "rehearsed (rolled back)" if result.mode == "rehearsal" else "applied"
    for r in result.revisions:
        click.echo(f"iucore: {r['revision']} {result.direction} {verb} in {r['duration_ms']:.0f} ms")
    if result.mode == "rehearsal":
        click.echo(
            f"iucore: catalog fingerprint unchanged: {result.fingerprint_after} "
            f"(alembic_version still {', '.join(result.to_heads) or 'base'})"
        )
    else:
        click.echo(f"iucore: now at {', '.join(result.to_heads) or 'base (empty)'}")


@db.command()
@click.argument("revision", default="head")
@click.option("--rehearse", is_flag=True, help="Run everything for real, then ROLLBACK instead of COMMIT.")
@click.option("--backup-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Take and verify a backup here first (mandatory before a real apply when given).")
@click.option("--allow-checksum-drift", metavar="REASON",
              help="Apply although applied files changed since apply; REASON goes in the audit.")
@_timeout_options
@click.pass_obj
def upgrade(obj: Ctx, revision: str, rehearse: bool, backup_dir: Path | None,
            allow_checksum_drift: str | None, lock_timeout: str | None,
            statement_timeout: str | None, lock_wait: str | None) -> None:
    """Apply revisions up to REVISION (default head): preflight → body → post-check.

    Each revision runs as one transaction under an advisory lock, with
    lock_timeout/statement_timeout set, and leaves an audit row. --rehearse
    runs the whole thing and rolls back, proving the catalog fingerprint and
    alembic_version unchanged.
    """
    from . import migrate

    opts = _options(obj, rehearse, lock_timeout, statement_timeout, lock_wait)
    result = migrate.upgrade(obj.target(), revision, project=obj.project_root(), options=opts,
                             sink=obj.sink(), allow_checksum_drift=allow_checksum_drift,
                             backup_dir=backup_dir)
    _print_run(obj, result)


@db.command()
@click.argument("revision")
@click.option("--rehearse", is_flag=True, help="Run the rollback for real, then ROLLBACK instead of COMMIT.")
@_timeout_options
@click.pass_obj
def downgrade(obj: Ctx, revision: str, rehearse: bool, lock_timeout: str | None,
              statement_timeout: str | None, lock_wait: str | None) -> None:
    """Roll back to REVISION (e.g. 033, -1, base): fail-closed guard → rollback → assert.

    A guard that refuses (an open gate, ledger rows, data that would be lost)
    exits 3 and changes nothing.
    """
    from . import migrate

    opts = _options(obj, rehearse, lock_timeout, statement_timeout, lock_wait)
    result = migrate.downgrade(obj.target(), revision, project=obj.project_root(), options=opts,
                               sink=obj.sink())
    _print_run(obj, result)


@db.command()
@click.pass_obj
def current(obj: Ctx) -> None:
    """The applied revision, the head, and what is pending."""
    from . import migrate

    info = migrate.current(obj.target(), project=obj.project_root())
    cur = ", ".join(info["current"]) or "base (empty)"
    text = f"{cur}{' (head)' if info['at_head'] else ''}"
    if info["pending"]:
        text += f"\npending: {' → '.join(info['pending'])}"
    obj.emit(info, text)


@db.command()
@click.option("--limit", default=50, show_default=True, help="Rows to show, newest first.")
@click.option("--revision", help="Only runs of this revision.")
@click.pass_obj
def history(obj: Ctx, limit: int, revision: str | None) -> None:
    """The audit history: every revision run, real or rehearsal, and its outcome."""
    from . import migrate
    from .transcript import format_table

    rows = migrate.history(obj.target(), limit=limit, revision=revision)
    if obj.as_json:
        obj.emit(rows)
        return
    cols = ["log_id", "started_at", "revision", "direction", "mode", "outcome", "actor", "duration_ms", "message"]
    table = [[r[c] if c != "started_at" else r[c].strftime("%Y-%m-%d %H:%M:%S") for c in cols] for r in rows]
    click.echo("\n".join(format_table(cols, table)))


@db.command("verify")
@click.pass_obj
def verify_cmd(obj: Ctx) -> None:
    """Checksums recorded at apply against the files now; exit 4 naming each edited file."""
    from . import migrate
    from .errors import ChecksumDrift

    rep = migrate.verify(obj.target(), project=obj.project_root())
    if obj.as_json:
        obj.emit(rep.to_json())
    else:
        ok = sum(f.status == "ok" for f in rep.files)
        added = [f for f in rep.files if f.status == "added"]
        click.echo(f"{ok} file(s) of {len(rep.applied)} applied revision(s) match their recorded sha256")
        for f in added:
            click.echo(f"  added since apply (not part of what ran): {f.file}")
        for line in rep.lines():
            click.echo(f"  DRIFT {line}")
    if not rep.ok:
        raise ChecksumDrift(f"{len(rep.problems)} file(s) differ from what was applied: "
                            + "; ".join(rep.lines()), problems=[f.to_json() for f in rep.problems])


@db.command("preflight")
@click.option("--expect-database", help="Fail unless connected to this database.")
@click.option("--expect-user", help="Fail unless connected as this user.")
@click.option("--backup-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Require a recent verified backup here.")
@click.option("--backup-max-age", default="24h", show_default=True, help="How recent the backup must be.")
@click.option("--max-xact-age", default="60s", show_default=True,
              help="A transaction open longer than this fails the check.")
@click.pass_obj
def preflight_cmd(obj: Ctx, expect_database: str | None, expect_user: str | None,
                  backup_dir: Path | None, backup_max_age: str, max_xact_age: str) -> None:
    """The mandatory-gates checklist before a real apply; exit 0 only if every check passes.

    Read identity, write identity (reversible probe on dot_config), every
    governable gate closed and never-flip intact, no inventory drift, applied
    checksums match, the migration lock free, no long transaction, and a recent
    verified backup when --backup-dir is given. A failing check exits 3.
    """
    from . import migrate
    from .config import parse_duration
    from .errors import Refused
    from .transcript import format_table

    rep = migrate.preflight(
        obj.target(), project=obj.project_root(), expect_database=expect_database,
        expect_user=expect_user, backup_dir=backup_dir,
        max_xact_age_s=parse_duration(max_xact_age, "--max-xact-age") / 1000,
        backup_max_age_s=parse_duration(backup_max_age, "--backup-max-age") / 1000,
    )
    if obj.as_json:
        obj.emit(rep.to_json())
    else:
        rows = [[c.name, "PASS" if c.ok else "FAIL", c.evidence] for c in rep.checks]
        click.echo("\n".join(format_table(["check", "status", "evidence"], rows)))
        click.echo(f"{sum(c.ok for c in rep.checks)}/{len(rep.checks)} mandatory gates PASS")
    if not rep.ok:
        raise Refused("preflight failed: " + "; ".join(f"{c.name}: {c.evidence}" for c in rep.failed),
                      failed=[c.name for c in rep.failed])


@db.command("grant")
@click.option("--readonly", "readonly_roles", multiple=True, help="Role to get the read-only policy.")
@click.option("--operator", "operator_roles", multiple=True, help="Role to get the operator policy.")
@click.option("--dry-run", is_flag=True, help="Print the GRANT statements, change nothing.")
@click.pass_obj
def grant_cmd(obj: Ctx, readonly_roles: tuple[str, ...], operator_roles: tuple[str, ...], dry_run: bool) -> None:
    """Apply the privilege policy to existing roles (derived from the live catalog).

    read-only: the observability views. operator: SELECT on what the tool
    reads and EXECUTE on the governed entry point fn_dot_iu_execute only
    (revision least_privilege): no DML, no ledger logger, no mutator. What the
    role held on IU Core objects before is revoked first (one transaction).
    """
    from .db import connect
    from .errors import BadInput
    from .roles import apply, plan_operator, plan_readonly

    if not readonly_roles and not operator_roles:
        raise BadInput("name at least one role: --readonly ROLE and/or --operator ROLE")
    with connect(obj.target()) as conn:
        plans = [plan_readonly(conn, r) for r in readonly_roles] + [plan_operator(conn, r) for r in operator_roles]
        if not dry_run:
            for p in plans:
                apply(conn, p)
    obj.emit([p.__dict__ for p in plans], "\n".join(
        f"{p.kind} {p.role}: {len(p.statements)} grant(s)" + ("" if not dry_run else "\n  " + ";\n  ".join(p.statements) + ";")
        for p in plans))


@db.command("backup")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the dump [.iucore/backups].")
@click.pass_obj
def backup_cmd(obj: Ctx, out_dir: Path | None) -> None:
    """pg_dump -Fc, then verify: PGDMP header, pg_restore TOC entry count, bytes, sha256."""
    import os

    from . import migrate

    out = out_dir or Path(os.environ.get("IUCORE_HOME") or ".iucore") / "backups"
    b = migrate.backup(obj.target(), out, sink=None if obj.as_json else click.echo)
    obj.emit(b.to_json(), f"Backup gate PASS — pg_dump -Fc {b.summary()}")


@cli.command("lint")
@click.pass_obj
def lint_cmd(obj: Ctx) -> None:
    """Static gates: parse (SQL and PL/pgSQL), SECURITY DEFINER search_path,
    REVOKE FROM PUBLIC, framework-owned timeouts, no hard-coded secrets or
    addresses. Exit 4 naming each finding; needs no database."""
    from .errors import CheckFailed
    from .lint import lint_project

    findings = lint_project(obj.project_root())
    obj.emit([f.__dict__ for f in findings], "\n".join(map(str, findings)) or "lint: no findings")
    if findings:
        raise CheckFailed(f"lint: {len(findings)} finding(s)", findings=[str(f) for f in findings])


# ---------------------------------------------------------------- selftest
@cli.command("selftest")
@click.argument("names", nargs=-1)
@click.option("--record", is_flag=True, help="Write selftests/<rev>.expected from this run (review it!).")
@click.option("--show", is_flag=True, help="Print every transcript, not only failing ones.")
@click.pass_obj
def selftest_cmd(obj: Ctx, names: tuple[str, ...], record: bool, show: bool) -> None:
    """Replay BEGIN…ROLLBACK self-tests against their recorded transcripts.

    Runs the self-tests of the applied revisions (others are skipped with a
    reason), proves nothing persisted, and compares each transcript with
    selftests/<rev>.expected: a difference prints a unified diff and exits 4;
    a self-test that raises or persists exits 1.
    """
    from . import migrate
    from .errors import CheckFailed, Failed

    results = migrate.selftest(obj.target(), list(names) or None, project=obj.project_root(), record=record)
    if obj.as_json:
        obj.emit([r.to_json() for r in results])
    else:
        for r in results:
            if show or r.status == "failed":
                click.echo(f"== selftest {r.name} ==")
                click.echo("\n".join(r.transcript))
            click.echo(f"selftest {r.name}: {r.status.upper()}{' — ' + r.reason if r.reason else ''}")
            if r.diff:
                click.echo(r.diff)
    failed = [r for r in results if r.status == "failed"]
    mismatched = [r for r in results if r.status == "mismatch"]
    if failed:
        raise Failed("self-test failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed))
    if mismatched:
        raise CheckFailed("self-test transcript mismatch: " + ", ".join(r.name for r in mismatched))


# ---------------------------------------------------------------- inventory
@cli.command("inventory")
@click.option("--check", is_flag=True, help="Exit 4 when any object drifts from the declared inventory.")
@click.pass_obj
def inventory_cmd(obj: Ctx, check: bool) -> None:
    """The DOT inventory: 7 classes, expected/present per class, and the drift list.

    Expected objects are what the applied revisions declare they add and
    remove; --check names every missing or extra object and exits 4.
    """
    from . import migrate
    from .errors import InventoryDrift
    from .transcript import format_table

    rep = migrate.inventory(obj.target(), project=obj.project_root())
    if obj.as_json:
        obj.emit(rep.to_json())
    else:
        rows = [[c["class"], c["expected"], c["present"], len(c["missing"]), len(c["extra"]),
                 "ok" if c["ok"] else "DRIFT"] for c in rep.classes]
        exp, pres = rep.to_json()["expected_total"], rep.to_json()["present_total"]
        rows.append(["total", exp, pres, sum(r[3] for r in rows), sum(r[4] for r in rows),
                     "ok" if rep.ok else "DRIFT"])
        click.echo(f"DOT inventory at {rep.revision or 'base (empty)'}: {pres}/{exp}")
        click.echo("\n".join(format_table(["class", "expected", "present", "missing", "extra", "status"], rows)))
        for line in rep.drift:
            click.echo(f"  {line}")
    if check and not rep.ok:
        raise InventoryDrift(
            f"inventory drift at {rep.revision}: {len(rep.drift)} object(s): " + "; ".join(rep.drift[:10])
            + (" …" if len(rep.drift) > 10 else ""),
            drift=rep.drift,
        )


# ---------------------------------------------------------------- dot
@cli.group(cls=_Group)
def dot() -> None:
    """Governed, gated, ledger-audited dot_iu_* operator commands."""


def _actor(obj: Ctx) -> str:
    from .config import default_actor

    return obj.actor or default_actor()


def _print_answer(obj: Ctx, ans: Any) -> None:
    from .operator import ensure_answer

    if obj.as_json:
        obj.emit(ans.to_json())
    else:
        click.echo(f"{ans.command} {ans.mode}: {ans.status}"
                   + (f" (closed_gates={ans.closed_gates})" if ans.closed_gates else ""))
        for stmt in ans.sql:
            click.echo(f"  sql: {stmt};")
        if ans.answer is not None:
            click.echo("  answer: " + json.dumps(ans.answer, sort_keys=True, default=str))
        if ans.run_id:
            click.echo(f"  ledger run_id: {ans.run_id}")
    ensure_answer(ans)


@dot.command("list")
@click.pass_obj
def dot_list(obj: Ctx) -> None:
    """Commands with category, mutating, reversible, governed, and availability here."""
    from .db import connect
    from .operator import list_commands
    from .transcript import format_table

    with connect(obj.target()) as conn:
        rows = list_commands(conn)
    if obj.as_json:
        obj.emit(rows)
        return
    cols = ["command", "category", "mutating", "reversible", "governed", "revision", "available"]
    click.echo("\n".join(format_table(cols, [[r[c] for c in cols] for r in rows])))


@dot.command("explain")
@click.argument("command")
@click.argument("params", nargs=-1)
@click.pass_obj
def dot_explain(obj: Ctx, command: str, params: tuple[str, ...]) -> None:
    """Print the ready-to-run governed SQL for COMMAND key=value… (psql can run it)."""
    from .operator import explain

    sql = explain(command, list(params), actor=obj.actor)
    obj.emit({"command": command, "sql": sql}, sql)


def _dot_verb(mode: str) -> Any:
    @click.argument("command")
    @click.argument("params", nargs=-1)
    @click.pass_obj
    def verb(obj: Ctx, command: str, params: tuple[str, ...]) -> None:
        from .db import connect
        from .operator import command as lookup
        from .operator import parse_params, run_command

        parse_params(lookup(command), list(params))  # bad input: exit 2 before any connection
        with connect(obj.target()) as conn:
            ans = run_command(conn, mode, command, list(params), _actor(obj))
        _print_answer(obj, ans)

    verb.__doc__ = {
        "plan": "Plan COMMAND key=value…: the governed SQL and the gates it needs (ledger: planned).",
        "apply": "Apply COMMAND key=value… under its gates (ledger: applied/refused/failed).",
        "verify": "Run a read COMMAND key=value… (ledger: verified/failed).",
    }[mode]
    return verb


for _mode in ("plan", "apply", "verify"):
    dot.command(_mode)(_dot_verb(_mode))


@dot.command("render")
@click.argument("collection_key")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Root under which iu-tree/_collections/<kind>/<key>.md is written.")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the manifest instead of writing it.")
@click.pass_obj
def dot_render(obj: Ctx, collection_key: str, out_dir: Path, to_stdout: bool) -> None:
    """Export a collection as a text manifest (text as code)."""
    from .db import connect
    from .textcode import export

    with connect(obj.target()) as conn:
        m = export(conn, collection_key)
    if to_stdout:
        click.echo(m.text(), nl=False)
        return
    path = out_dir / m.path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(m.text(), encoding="utf-8")
    obj.emit({"path": str(path), "pieces": len(m.pieces)}, f"wrote {path} ({len(m.pieces)} pieces)")


@dot.command("import")
@click.argument("manifest", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.pass_obj
def dot_import(obj: Ctx, manifest: Path) -> None:
    """Re-create a collection from its manifest through the governed functions.

    Needs the operator-runtime and composer gates open. A malformed manifest
    (the line at fault is named) or one that conflicts with the database is
    refused and changes nothing; an identical collection is left as it is.
    """
    from .db import connect
    from .textcode import import_manifest, parse

    m = parse(manifest.read_text(encoding="utf-8"), str(manifest))
    with connect(obj.target()) as conn:
        res = import_manifest(conn, m, _actor(obj))
    obj.emit(res, f"{res['status']}: {res['collection_key']} ({res['created_pieces']} piece(s) created)")


# ---------------------------------------------------------------- gate
@cli.group(cls=_Group)
def gate() -> None:
    """The gate protocol: open (approved, with a TTL), close, status, watchdog."""


@gate.command("open")
@click.argument("gate_key")
@click.option("--approval-id", required=True, help="The approval (uuid) this opening rests on.")
@click.option("--ttl", required=True, type=int, help="Seconds until the watchdog may close it, in (0, 3600].")
@click.option("--reason", required=True, help="Why it is opened (recorded).")
@click.pass_obj
def gate_open(obj: Ctx, gate_key: str, approval_id: str, ttl: int, reason: str) -> None:
    """Open a governable gate; never-flip and non-governable gates are refused."""
    _gate_call(obj, "dot_iu_gate_open", {"gate_key": gate_key, "approval_id": approval_id,
                                         "reason": reason, "ttl_seconds": str(ttl)})


@gate.command("close")
@click.argument("gate_key")
@click.option("--reason", default="closed by operator", show_default=True)
@click.pass_obj
def gate_close(obj: Ctx, gate_key: str, reason: str) -> None:
    """Close a gate."""
    _gate_call(obj, "dot_iu_gate_close", {"gate_key": gate_key, "reason": reason})


@gate.command("watchdog")
@click.pass_obj
def gate_watchdog(obj: Ctx) -> None:
    """Close every governable gate whose open has expired."""
    _gate_call(obj, "dot_iu_gate_watchdog", {})


@gate.command("status")
@click.pass_obj
def gate_status(obj: Ctx) -> None:
    """The 9-gate verify: all_safe, all_governed_closed, never_flip_intact."""
    from .db import connect
    from .operator import ensure_answer, run_command
    from .transcript import format_table

    with connect(obj.target()) as conn:
        ans = run_command(conn, "verify", "dot_iu_gate_verify_closed", {}, _actor(obj))
    if obj.as_json:
        obj.emit(ans.to_json())
    elif isinstance(ans.answer, dict):
        a = ans.answer
        click.echo(f"all_safe = {a.get('all_safe')} | all_governed_closed = {a.get('all_governed_closed')}"
                   f" | never_flip_intact = {a.get('never_flip_intact')}")
        gates = a.get("gates") or []
        if gates:
            cols = [k for k in ("key", "class", "value", "state") if k in gates[0]]
            click.echo("\n".join(format_table(cols, [[g.get(c) for c in cols] for g in gates])))
        if a.get("stale_open"):
            click.echo(str(a.get("guidance")))
    ensure_answer(ans)
    if isinstance(ans.answer, dict) and ans.answer.get("all_safe") is False:
        from .errors import CheckFailed

        raise CheckFailed("gates not all safe", answer=ans.answer)


def _gate_call(obj: Ctx, name: str, params: dict[str, str]) -> None:
    from .db import connect
    from .operator import run_command

    with connect(obj.target()) as conn:
        ans = run_command(conn, "apply", name, params, _actor(obj))
    _print_answer(obj, ans)


# ---------------------------------------------------------------- proof
@cli.group(cls=_Group)
def proof() -> None:
    """Reproducible proofs from the operator reports."""


@proof.command("operator-runtime")
@click.option("--collection-key", default="iu_core.runtime290.file-001", show_default=True,
              help="The collection to prove on (composed first if absent).")
@click.option("--approval-id", help="Approval (uuid) for opening the gates [a fresh one, printed].")
@click.option("--ttl", default=600, show_default=True, help="TTL of the gate openings, seconds.")
@click.pass_obj
def proof_operator_runtime(obj: Ctx, collection_key: str, approval_id: str | None, ttl: int) -> None:
    """Seed 000's seven-step durable proof: plan → apply → verify → checkpoint → compensate → verify → refused.

    Gates open for the mutating window only and close in `finally`. Exit 0
    only if every step matched, the order is restored, the composer events are
    2 piece_reordered + 1 collection_rendered (delayed lane, distinct ids) and
    the gates end all_safe.
    """
    from .db import connect
    from .proof import DEFAULT_ACTOR, run_proof

    with connect(obj.target()) as conn:
        res = run_proof(conn, actor=obj.actor or DEFAULT_ACTOR, collection_key=collection_key,
                        approval_id=approval_id, ttl_seconds=ttl, say=None if obj.as_json else click.echo)
    if obj.as_json:
        obj.emit(res.to_json())
    else:
        click.echo("\n".join(res.table()))
        click.echo(f"membership order: {' '.join(res.order_before)} → {' '.join(res.order_after)}")
        click.echo(f"composer events: {res.events}")
        g = res.final_gates
        click.echo(f"end-state: all_safe = {g.get('all_safe')} | all_governed_closed = "
                   f"{g.get('all_governed_closed')} | never_flip_intact = {g.get('never_flip_intact')}")
    if not res.ok:
        from .errors import Failed

        raise Failed("operator-runtime proof failed: " + "; ".join(res.problems))
    if not obj.as_json:
        click.echo(f"PROOF PASS ({res.duration_ms:.0f} ms)")


# ---------------------------------------------------------------- demo
@cli.command("demo")
@click.pass_obj
def demo_cmd(obj: Ctx) -> None:
    """The whole story on the embedded server: rehearse + apply head, self-tests,
    compose runtime/290, the seven-step proof, a worker dry-run, the inventory
    and the health views, with timings. Running it twice works."""
    from .demo import Demo

    target = obj.target()
    click.echo(f"iucore demo on {target.display}" + (" (embedded PostgreSQL)" if target.embedded else ""))
    Demo(target, obj.project_root(), click.echo, actor=obj.actor or "iucore_demo").run()


# ---------------------------------------------------------------- worker
@cli.group(cls=_Group)
def worker() -> None:
    """The route worker (dry-run delivery unless the delivery gate and allowlist allow it)."""


@worker.command("run")
@click.argument("route", default="iu_outbound_default")
@click.option("--limit", default=200, show_default=True, help="Events per run (1..10000).")
@click.pass_obj
def worker_run(obj: Ctx, route: str, limit: int) -> None:
    """Run the route worker once: seen / attempts_written / skipped / dead_lettered."""
    from .db import connect
    from .operator import ensure_answer, run_command

    with connect(obj.target()) as conn:
        ans = run_command(conn, "apply", "dot_iu_route_worker_run",
                          {"route_code": route, "limit": str(limit)}, _actor(obj))
    if obj.as_json:
        obj.emit(ans.to_json())
    elif isinstance(ans.answer, dict):
        a = ans.answer
        click.echo(f"fn_iu_route_worker_run({route!r}, {limit}) → seen={a.get('seen')}, "
                   f"attempts_written={a.get('attempts_written')}, skipped={a.get('skipped')}, "
                   f"dead_lettered={a.get('dead_lettered')}, dry_run={a.get('dry_run')}")
    ensure_answer(ans)


# ---------------------------------------------------------------- server
@cli.group(cls=_Group)
def server() -> None:
    """The embedded PostgreSQL (data under .iucore/ or $IUCORE_HOME)."""


def _server() -> Any:
    from .server import EmbeddedServer

    return EmbeddedServer.from_env()


@server.command("start")
@click.pass_obj
def server_start(obj: Ctx) -> None:
    """Start the embedded server (no-op if it runs) and print its URL."""
    s = _server()
    url = s.ensure_running()
    obj.emit(s.status(), url)


@server.command("stop")
@click.pass_obj
def server_stop(obj: Ctx) -> None:
    """Stop the embedded server."""
    stopped = _server().stop()
    obj.emit({"stopped": stopped}, "stopped" if stopped else "not running")


@server.command("status")
@click.pass_obj
def server_status(obj: Ctx) -> None:
    """Whether the embedded server runs, with its pid, major, data dir and URL."""
    st = _server().status()
    text = (
        f"running: PostgreSQL {st['major']} pid {st['pid']}\nurl: {st['url']}\ndata: {st['datadir']}"
        if st["running"]
        else f"not running (PostgreSQL {st['major']}, data {st['datadir']}"
        f"{'' if st['initialised'] else ', not initialised'})"
    )
    obj.emit(st, text)


@server.command("url")
@click.pass_obj
def server_url(obj: Ctx) -> None:
    """Print the embedded server's URL (starting it if needed): psql "$(iucore server url)"."""
    url = _server().ensure_running()
    obj.emit({"url": url}, url)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="iucore")


if __name__ == "__main__":  # pragma: no cover
    main()
