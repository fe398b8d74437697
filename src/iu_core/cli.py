"""iucore: guarded, audited, rehearsable migrations for the IU Core database.

With no --url and no IUCORE_DATABASE_URL, iucore starts (on demand) a local
PostgreSQL from a pip-installed wheel, data kept under .iucore/ (or
$IUCORE_HOME).

Exit codes: 0 success; 1 failed (SQL error, post-check failed); 2 usage or bad
input; 3 refused (a guard, gate or lock said no; nothing changed); 4 a check
found a difference; 5 stopped part-way (earlier revisions committed); 130/143
interrupted (SIGINT/SIGTERM).

This module parses, calls one library function per verb (`iu_core.framework.migrate`
and `iu_core.commands.db` for `db`, `iu_core.release.datascripts` for `runtime`,
`iu_core.commands.verbs` for the rest),
renders the report it returns as text or JSON (`to_json()`), and maps the
errors of `iu_core.errors` to those exit codes. It opens no connection and
holds no SQL; a report whose content is a failure says so itself
(`raise_for_outcome()`), after it has been shown.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click

from .config import RunOptions, Settings, find_project_root, options_from_ini, parse_duration
from .errors import BadInput, IUCoreError
from .framework.stamp import WARNING
from .framework.transcript import format_table
from .pg.server import resolve_target
from .pg.target import Target


def _lazy(name: str) -> ModuleType:
    """`name`, imported when first used (importlib's LazyLoader): the verbs'
    modules pull in psycopg, Alembic and pglast, which `iucore --help` and a
    mistyped flag should not wait for. The imports stay here, at the top,
    flowing one way (cli -> commands -> domain)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from .commands import db as db_verbs
    from .commands import verbs as commands
    from .framework import migrate
    from .release import datascripts, report
else:
    commands = _lazy("iu_core.commands.verbs")
    db_verbs = _lazy("iu_core.commands.db")
    datascripts = _lazy("iu_core.release.datascripts")
    migrate = _lazy("iu_core.framework.migrate")
    report = _lazy("iu_core.release.report")


@dataclass
class Ctx:
    url: str | None
    as_json: bool
    actor: str | None
    project: str | None
    # --lock-retries / --retry-budget of the command being run (see _retry_options)
    lock_retries: str | None = None
    retry_budget: str | None = None
    _target: Target | None = None
    _settings: Settings | None = None
    emitted: bool = False  # a JSON document went out: an error must not add a second

    def settings(self) -> Settings:
        """Flags > environment > [iucore] in alembic.ini > defaults, resolved once (config.Settings)."""
        if self._settings is None:
            self._settings = Settings.resolve(project=self.project, url=self.url, actor=self.actor)
        return self._settings

    def flag_actor(self) -> str | None:
        """--actor when given, checked where every setting is resolved (Settings); else None."""
        return self.settings().actor if self.actor else None

    def target(self) -> Target:
        if self._target is None:
            self._target = resolve_target(self.settings())
        return self._target

    def project_root(self) -> Path:
        return find_project_root(self.project)

    def emit(self, data: Any, text: str | None = None) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
            self.emitted = True
        elif text is not None:
            click.echo(text)

    def sink(self) -> Any:
        return None if self.as_json else click.echo


# The global options, accepted before or after the subcommand
# (`iucore --json db current` and `iucore db current --json`): every command
# added to a _Group gets a copy that writes into the one Ctx.
_GLOBAL_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--url", "url", {"help": "Target database (default: $IUCORE_DATABASE_URL, else the embedded server)."}),
    ("--json", "as_json", {"is_flag": True, "default": None, "help": "Machine-readable output."}),
    ("--actor", "actor", {"help": "Who runs this, recorded in the audit (default: the OS user)."}),
    ("--project", "project", {"type": click.Path(file_okay=False),
                              "help": "Project root (default: found from cwd)."}),
]


def _store_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    obj = ctx.find_object(Ctx)
    if obj is not None and value not in (None, False) and param.name:
        setattr(obj, param.name, value)


def _add_global_options(cmd: click.Command) -> None:
    have = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    for flag, name, kw in _GLOBAL_OPTIONS:
        if flag not in have:
            cmd.params.append(click.Option([flag, name], expose_value=False, callback=_store_global, **kw))


class _Group(click.Group):
    """Maps the IUCoreError hierarchy to exit codes, once, at the top; gives every
    command it holds the global options."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _add_global_options(cmd)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IUCoreError as exc:
            _report(ctx, exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:  # outside a migration run (which handles its own)
            click.echo("iucore: interrupted", err=True)
            ctx.exit(128 + getattr(exc, "signum", 2))


def _report(ctx: click.Context, exc: IUCoreError) -> None:
    # No redaction here: a target is shown only as Target.display, which is
    # built without the password, so no message can carry one.
    obj: Ctx | None = ctx.find_object(Ctx)
    if obj is not None and obj.as_json and not obj.emitted:
        payload = exc.to_json()
        payload["exit_code"] = exc.exit_code
        click.echo(json.dumps({"ok": False, **payload}, indent=2, default=str, sort_keys=True))
    click.echo(f"iucore: {exc.label}: {exc.message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", help="Target database (default: the embedded server).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--actor", help="Who runs this, recorded in the audit (default: the OS user).")
@click.option("--project", type=click.Path(file_okay=False), help="Project root (default: found from cwd).")
@click.pass_context
def cli(ctx: click.Context, url: str | None, as_json: bool, actor: str | None, project: str | None) -> None:
    """iucore: guarded, audited, rehearsable migrations for the IU Core database.

    With no --url and no IUCORE_DATABASE_URL, an embedded PostgreSQL is started
    on demand (data under .iucore/ or $IUCORE_HOME). --url, --json, --actor and
    --project are accepted before or after the command.

    Exit codes: 0 ok; 1 failed; 2 bad input; 3 refused (nothing changed);
    4 a check found a difference; 5 stopped part-way (earlier revisions
    committed); 130/143 interrupted by SIGINT/SIGTERM.
    """
    ctx.obj = Ctx(url=url, as_json=as_json, actor=actor, project=project)


# ---------------------------------------------------------------- db
@cli.group(cls=_Group)
def db() -> None:
    """Apply, roll back and inspect revisions."""


def _retry_options(f: Any) -> Any:
    """--lock-retries and --retry-budget, kept in the Ctx (the commands' signatures stay as they are)."""
    f = click.option("--retry-budget", expose_value=False, callback=_store_global,
                     help="How long a unit may keep retrying lock timeouts, sleeps included [3min].")(f)
    f = click.option("--lock-retries", expose_value=False, callback=_store_global,
                     help="Retries of a unit (revision, rehearsal, script, self-test) that hit "
                          "lock_timeout; 0: fail at the first [40].")(f)
    return f


def _timeout_options(f: Any) -> Any:
    f = click.option("--lock-wait", help="How long to wait for another run's migration lock [30s].")(f)
    f = click.option("--statement-timeout", help="statement_timeout for the run [60s].")(f)
    f = click.option("--lock-timeout", help="lock_timeout for the run: the longest production may queue "
                                            "behind one of its lock requests [200ms].")(f)
    return _retry_options(f)


def _options(obj: Ctx, rehearse: bool, lock_timeout: str | None, statement_timeout: str | None,
             lock_wait: str | None) -> RunOptions:
    opts = options_from_ini(
        obj.project_root() / "alembic.ini",
        lock_timeout=lock_timeout, statement_timeout=statement_timeout, lock_wait=lock_wait,
        lock_retries=obj.lock_retries, retry_budget=obj.retry_budget,
    ).with_(rehearse=rehearse)
    return opts.with_(actor=obj.settings().actor)


def _reject_online_only(**given: Any) -> None:
    used = ["--" + k.replace("_", "-") for k, v in given.items() if v]
    if used:
        raise BadInput(f"--sql writes a script and runs nothing: {', '.join(used)} only apply to a run")


def _print_script(obj: Ctx, script: Any) -> None:
    if obj.as_json:
        obj.emit(script.to_json())
    else:
        click.echo(script.text, nl=False)


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
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the psql script for change review instead of running (REVISION: [FROM:]TO, "
                   "FROM defaults to base); connects to nothing.")
@_timeout_options
@click.pass_obj
def upgrade(obj: Ctx, revision: str, rehearse: bool, backup_dir: Path | None,
            allow_checksum_drift: str | None, as_sql: bool, lock_timeout: str | None,
            statement_timeout: str | None, lock_wait: str | None) -> None:
    """Apply revisions up to REVISION (default head): preflight → body → post-check.

    Each revision runs as one transaction under an advisory lock, with
    lock_timeout/statement_timeout set, and leaves an audit row. --rehearse
    runs the whole thing and rolls back, proving the catalog fingerprint and
    alembic_version unchanged. A run that commits some revisions and then
    stops exits 5 and says where the database is; SIGINT/SIGTERM roll back
    the running revision and exit 130/143.

    --sql prints one script that `psql -X -v ON_ERROR_STOP=1 -f` runs to the
    same end state (bootstrap, lock, timeouts, then per revision one
    transaction with its preflight, body, post-check, version and audit row).
    """
    opts = _options(obj, rehearse, lock_timeout, statement_timeout, lock_wait)
    if as_sql:
        _reject_online_only(rehearse=rehearse, backup_dir=backup_dir, allow_checksum_drift=allow_checksum_drift,
                            lock_retries=obj.lock_retries, retry_budget=obj.retry_budget)
        _print_script(obj, migrate.offline_sql("upgrade", revision, project=obj.project_root(), options=opts))
        return
    result = migrate.upgrade(obj.target(), revision, project=obj.project_root(), options=opts,
                             sink=obj.sink(), allow_checksum_drift=allow_checksum_drift,
                             backup_dir=backup_dir)
    _print_run(obj, result)


@db.command()
@click.argument("revision")
@click.option("--rehearse", is_flag=True, help="Run the rollback for real, then ROLLBACK instead of COMMIT.")
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the psql script for change review instead of running (REVISION: FROM:TO); "
                   "connects to nothing.")
@_timeout_options
@click.pass_obj
def downgrade(obj: Ctx, revision: str, rehearse: bool, as_sql: bool, lock_timeout: str | None,
              statement_timeout: str | None, lock_wait: str | None) -> None:
    """Roll back to REVISION (e.g. 033, -1, base): fail-closed guard → rollback → assert.

    A guard that refuses (an open gate, ledger rows, data that would be lost)
    exits 3 and changes nothing; if earlier revisions of the run already
    rolled back and committed, exit 5 names where the database now is.
    """
    opts = _options(obj, rehearse, lock_timeout, statement_timeout, lock_wait)
    if as_sql:
        _reject_online_only(rehearse=rehearse, lock_retries=obj.lock_retries, retry_budget=obj.retry_budget)
        _print_script(obj, migrate.offline_sql("downgrade", revision, project=obj.project_root(), options=opts))
        return
    result = migrate.downgrade(obj.target(), revision, project=obj.project_root(), options=opts,
                               sink=obj.sink())
    _print_run(obj, result)


@db.command("adopt")
@click.argument("revision")
@click.option("--rehearse", is_flag=True, help="Run every check and the recording, then ROLLBACK.")
@_timeout_options
@click.pass_obj
def adopt_cmd(obj: Ctx, revision: str, rehearse: bool, lock_timeout: str | None,
              statement_timeout: str | None, lock_wait: str | None) -> None:
    """Take over a database migrated by hand up to REVISION: prove it, then record it.

    Checks object by object what the chain declares at REVISION (functions by
    full signature), the command catalog against the registry, the gates, and
    that nothing of a later revision and no unacknowledged IU-Core-named extra
    (acknowledged.toml) is present. Any difference: exit 3, each one named,
    nothing changed. Otherwise REVISION goes into alembic_version with an
    `adopted` audit row per revision, holding the evidence and the files'
    sha256. A database iucore already manages is refused.
    """
    opts = _options(obj, rehearse, lock_timeout, statement_timeout, lock_wait)
    res = db_verbs.adopt(obj.target(), revision, project=obj.project_root(), options=opts, sink=obj.sink())
    if obj.as_json:
        obj.emit(res.to_json())
    elif rehearse:
        click.echo(f"iucore: adopt {res.revision} rehearsed (rolled back); catalog fingerprint unchanged: "
                   f"{res.fingerprint_after}")
    else:
        click.echo(f"iucore: adopted {res.revision}: now at {res.revision} "
                   f"(vouched for {' → '.join(res.chain)})")


@db.command("stamp")
@click.argument("revision")
@_timeout_options
@click.pass_obj
def stamp_cmd(obj: Ctx, revision: str, lock_timeout: str | None, statement_timeout: str | None,
              lock_wait: str | None) -> None:
    """Record REVISION as applied WITHOUT checking anything (Alembic's stamp), audited.

    The audit row (outcome `stamped`) names what was stamped, from where and
    by whom, and warns that nothing was verified. To take over a database
    migrated by hand, use `db adopt REVISION`: it proves every object first.
    """
    opts = _options(obj, False, lock_timeout, statement_timeout, lock_wait)
    res = migrate.stamp(obj.target(), revision, project=obj.project_root(), options=opts, sink=obj.sink())
    if obj.as_json:
        obj.emit(res.to_json())
    elif res.nothing_to_do:
        click.echo(f"iucore: nothing to stamp: already at {', '.join(res.to_heads) or 'base'}")
    else:
        click.echo(f"iucore: stamped {', '.join(res.to_heads) or 'base'} "
                   f"(from {', '.join(res.from_heads) or 'base'}); WARNING: {WARNING}")


@db.command()
@click.pass_obj
def current(obj: Ctx) -> None:
    """The applied revision, the head, and what is pending."""
    pos = migrate.current(obj.target(), project=obj.project_root())
    cur = ", ".join(pos.current) or "base (empty)"
    text = f"{cur}{' (head)' if pos.at_head else ''}"
    if pos.pending:
        text += f"\npending: {' → '.join(pos.pending)}"
    obj.emit(pos.to_json(), text)


@db.command()
@click.option("--limit", default=50, show_default=True, help="Rows to show, newest first.")
@click.option("--revision", help="Only runs of this revision.")
@click.pass_obj
def history(obj: Ctx, limit: int, revision: str | None) -> None:
    """The audit history: every revision run, real or rehearsal, and its outcome.

    Start times are ISO 8601 with the session's UTC offset.
    """
    hist = migrate.history(obj.target(), limit=limit, revision=revision)
    if obj.as_json:  # ISO 8601 with the offset, e.g. 2025-05-01T09:30:12.345678+02:00
        obj.emit(hist.to_json())
        return
    rows = hist.rows
    cols = ["log_id", "started_at", "revision", "direction", "mode", "outcome", "actor", "duration_ms", "message"]
    table = [[r[c] if c != "started_at" else r[c].isoformat(timespec="seconds") for c in cols] for r in rows]
    click.echo("\n".join(format_table(cols, table)))


@db.command("verify")
@click.pass_obj
def verify_cmd(obj: Ctx) -> None:
    """Checksums recorded at apply against the files now, and the SSOT check.

    SSOT (seed 004): the registry's governed commands against the live catalog,
    row for row, and the catalog seed INSERTs of 280 and 034 re-run inside a
    rolled-back transaction, each proving INSERT 0 0. Exit 4 naming each edited
    file and each differing catalog row.
    """
    rep = db_verbs.verify(obj.target(), project=obj.project_root())
    ssot = rep.ssot
    if obj.as_json:
        obj.emit(rep.to_json())
    else:
        ok = sum(f.status == "ok" for f in rep.files)
        added = [f for f in rep.files if f.status == "added"]
        click.echo(f"{ok} file(s) of {len(rep.applied)} applied revision(s) match their recorded sha256")
        for f in added:
            click.echo(f"  added since apply (not part of what ran): {f.file}")
        for f in rep.files:
            if f.status == "revised":
                click.echo(f"  self-test revised since apply (not part of what ran): {f.file}")
        for line in rep.lines():
            click.echo(f"  DRIFT {line}")
        if ssot is not None and ssot.applied:
            click.echo(f"SSOT {'PASS' if ssot.ok else 'FAIL'}:")
            for line in ssot.summary():
                click.echo(f"  {line}")
    rep.raise_for_outcome()


@db.command("preflight")
@click.option("--read-url", metavar="URL",
              help="The read-only role's connection (seed 002 A2: context_pack_readonly); without it the "
                   "read-identity gate fails.")
@click.option("--expect-database", help="Fail unless connected to this database.")
@click.option("--expect-user", help="Fail unless connected as this user.")
@click.option("--backup-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the recent verified backup of this database is (mandatory: without it the gate fails).")
@click.option("--backup-max-age", default="24h", show_default=True, help="How recent the backup must be.")
@click.option("--max-xact-age", default="60s", show_default=True,
              help="A transaction open longer than this fails the check.")
@click.pass_obj
def preflight_cmd(obj: Ctx, read_url: str | None, expect_database: str | None, expect_user: str | None,
                  backup_dir: Path | None, backup_max_age: str, max_xact_age: str) -> None:
    """The 14 mandatory gates before a real apply; exit 0 only if every one passes.

    Read identity through the read-only role (--read-url; it must not be able
    to write), write identity with a reversible probe on dot_config, server
    health and version, a recent verified backup of this database
    (--backup-dir), every gate closed and never-flip intact, the prior surface
    verified (its objects and self-tests), no inventory drift, the applied
    files' checksums, the SSOT (registry = catalog), no hardcoded secret in the
    files to apply, those files follow the conventions, the migration lock
    free, no long transaction, pg_dump/pg_restore of the server's major. A
    check that cannot run fails. A failing gate exits 3. The run is recorded
    in the audit (revision `preflight`), so `db report` of the next run shows it.
    """
    read_target = Target.parse(read_url) if read_url else None
    rep = db_verbs.preflight(
        obj.target(), project=obj.project_root(), actor=obj.actor, read_target=read_target,
        expect_database=expect_database, expect_user=expect_user, backup_dir=backup_dir,
        max_xact_age_s=parse_duration(max_xact_age, "--max-xact-age") / 1000,
        backup_max_age_s=parse_duration(backup_max_age, "--backup-max-age") / 1000,
    )
    if obj.as_json:
        obj.emit(rep.to_json())
    else:
        rows = [[c.name, "PASS" if c.ok else "FAIL", c.evidence] for c in rep.checks]
        click.echo("\n".join(format_table(["check", "status", "evidence"], rows)))
        click.echo(rep.summary())
        click.echo(f"recorded as run {rep.recorded}" if rep.recorded
                   else f"WARNING: not recorded in the audit: {rep.not_recorded}")
    rep.raise_for_outcome()


@db.command("report")
@click.argument("run_id", required=False)
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              help="Write the report to this file (Markdown; JSON with --json) instead of stdout.")
@click.pass_obj
def report_cmd(obj: Ctx, run_id: str | None, out_file: Path | None) -> None:
    """One run (default: the last) as the seeds' evidence appendix, in Markdown.

    RUN_ID is a run's uuid or its first characters (`db history --json` shows
    them). Real or rehearsal; upgrade, downgrade, adopt, stamp or a runtime
    script. A1 target and read identity, every file's sha256 and md5; A2 the
    `db preflight` checklist that preceded the run; A3 gates before and after;
    A4 every statement's command tag and the post-check rows; A5 the object
    diff per inventory class, catalog rows added/removed, volatility and
    SECURITY DEFINER of what changed; A6 row counts of every IU Core table
    before → after with Δ and the tables not written, schema size; A7 backup,
    the self-test after the run, a rehearsal's proof that nothing persisted.
    All of it recorded while the run happened. An unknown RUN_ID exits 2.
    """
    rep = db_verbs.report(obj.target(), run_id)
    if out_file is not None:
        text = json.dumps(rep.to_json(), indent=2, default=str, sort_keys=True) + "\n" if obj.as_json \
            else rep.render()
        written = report.write(out_file, text)
        obj.emit({"run_id": rep.run_id, "written": str(written)},
                 f"iucore: report of run {rep.run_id} written to {written}")
    elif obj.as_json:
        obj.emit(rep.to_json())
    else:
        click.echo(rep.render(), nl=False)


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
    commands.require_roles(list(readonly_roles), list(operator_roles))  # exit 2 before any connection
    rep = commands.grant(obj.target(), readonly_roles=list(readonly_roles), operator_roles=list(operator_roles),
                         dry_run=dry_run)
    obj.emit(rep.to_json(), "\n".join(
        f"{p.kind} {p.role}: {len(p.statements)} grant(s)" + ("" if not dry_run else "\n  " + ";\n  ".join(p.statements) + ";")
        for p in rep.plans))


@db.command("backup")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="Directory for the dump [.iucore/backups].")
@click.option("--jobs", type=int, help="Directory format, dumped by this many parallel jobs (pg_dump -Fd -j N).")
@click.option("--pg-dump", "pg_dump", help="The pg_dump to use [the oldest found of the server's major or newer].")
@click.pass_obj
def backup_cmd(obj: Ctx, out_dir: Path | None, jobs: int | None, pg_dump: str | None) -> None:
    """pg_dump -Fc (or -Fd -j N with --jobs), then verify it and record a sidecar.

    The dump is created exclusively, mode 0600 (a directory: 0700), from a
    snapshot of iucore's own connection. Verified: PGDMP header, TOC and a full
    read by the server's own pg_restore major, database name, bytes, sha256;
    the sidecar <name>.json records the database, its oid and the cluster's
    system identifier, which preflight --backup-dir checks. Nothing is left
    behind on failure.
    """
    out = out_dir or obj.settings().home / "backups"
    b = migrate.backup(obj.target(), out, jobs=jobs, pg_dump=pg_dump, sink=None if obj.as_json else click.echo)
    obj.emit(b.to_json(), f"Backup gate PASS — {b.summary()}")


@cli.command("lint")
@click.pass_obj
def lint_cmd(obj: Ctx) -> None:
    """Static gates: parse (SQL and PL/pgSQL), SECURITY DEFINER search_path,
    REVOKE FROM PUBLIC, framework-owned timeouts, no hard-coded secrets or
    addresses. Exit 4 naming each finding; needs no database."""
    rep = commands.lint(obj.project_root())
    obj.emit(rep.to_json(), "\n".join(map(str, rep.findings)) or "lint: no findings")
    rep.raise_for_outcome()


# ---------------------------------------------------------------- selftest
@cli.command("selftest")
@click.argument("names", nargs=-1)
@click.option("--record", is_flag=True, help="Write selftests/<rev>.expected from this run (review it!).")
@click.option("--show", is_flag=True, help="Print every transcript, not only failing ones.")
@click.option("--statement-timeout", help="statement_timeout for the self-tests [60s].")
@click.option("--lock-timeout", help="lock_timeout for the self-tests, as for a run [200ms].")
@_retry_options
@click.pass_obj
def selftest_cmd(obj: Ctx, names: tuple[str, ...], record: bool, show: bool, lock_timeout: str | None,
                 statement_timeout: str | None) -> None:
    """Replay BEGIN…ROLLBACK self-tests against their recorded transcripts.

    Runs the self-tests of the applied revisions (others are skipped with a
    reason), proves nothing persisted, and compares each transcript with
    selftests/<rev>.expected: a difference prints a unified diff and exits 4;
    a self-test that raises or persists exits 1. Self-tests run with the
    run's lock_timeout and statement_timeout; one that hits lock_timeout is
    retried whole, and one that does on every try exits 3 naming the holder.
    """
    opts = _options(obj, False, lock_timeout, statement_timeout, None)
    rep = commands.selftest(obj.target(), list(names) or None, project=obj.project_root(), record=record,
                            options=opts, sink=obj.sink(), actor=obj.actor)
    if obj.as_json:
        obj.emit(rep.to_json())
    else:
        for r in rep.results:
            if show or r.status == "failed":
                click.echo(f"== selftest {r.name} ==")
                click.echo("\n".join(r.transcript))
            click.echo(f"selftest {r.name}: {r.status.upper()}{' — ' + r.reason if r.reason else ''}")
            if r.diff:
                click.echo(r.diff)
    rep.raise_for_outcome()


# ---------------------------------------------------------------- inventory
@cli.command("inventory")
@click.option("--check", is_flag=True, help="Exit 4 when any object drifts from the declared inventory.")
@click.pass_obj
def inventory_cmd(obj: Ctx, check: bool) -> None:
    """The DOT inventory: 7 classes, expected/present per class, and the drift list.

    Expected objects are what the applied revisions declare they add and
    remove. Only IU Core's objects count: Directus's and other schemas' never
    do. --check names every missing object, and every IU-Core-named extra not
    acknowledged in acknowledged.toml, and exits 4.
    """
    rep = db_verbs.inventory(obj.target(), project=obj.project_root())
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
        for a in rep.acknowledged_extras:
            click.echo(f"  acknowledged extra {a.cls} {a.name}: {a.reason} (by {a.by})")
        for a in rep.stale_acknowledgements:
            click.echo(f"  note: acknowledged {a.cls} {a.name} is not present (acknowledged.toml)")
        if rep.revision is None and pres:
            click.echo("  hint: no revision is recorded here, yet IU Core objects are present: if the chain "
                       "was applied by hand, take the database over with `iucore db adopt REV`")
    if check:
        rep.raise_for_outcome()


# ---------------------------------------------------------------- dot
@cli.group(cls=_Group)
def dot() -> None:
    """Governed, gated, ledger-audited dot_iu_* operator commands."""


def _actor(obj: Ctx) -> str:
    return obj.settings().actor


def _print_answer(obj: Ctx, ans: Any) -> None:
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
    ans.raise_for_outcome()


@dot.command("list")
@click.pass_obj
def dot_list(obj: Ctx) -> None:
    """Commands with category, mutating, reversible, governed, and availability here."""
    rows = commands.dot_list(obj.target()).rows
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
    ex = commands.dot_explain(command, list(params), actor=obj.flag_actor())
    obj.emit(ex.to_json(), ex.sql)


def _dot_verb(mode: str) -> Any:
    @click.argument("command")
    @click.argument("params", nargs=-1)
    @click.pass_obj
    def verb(obj: Ctx, command: str, params: tuple[str, ...]) -> None:
        commands.dot_params(command, list(params))  # bad input: exit 2 before any connection
        _print_answer(obj, commands.dot_run(obj.target(), mode, command, list(params), actor=_actor(obj)))

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
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="Root under which iu-tree/_collections/<kind>/<key>.md is written.")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the manifest instead of writing it.")
@click.pass_obj
def dot_render(obj: Ctx, collection_key: str, out_dir: Path, to_stdout: bool) -> None:
    """Export a collection as a text manifest (text as code).

    Nothing is ever written outside --out: a key that is not a relative path
    of plain segments, or a symlink below --out that leads outside it, is
    refused (exit 2). An existing manifest is replaced atomically.
    """
    res = commands.dot_render(obj.target(), collection_key, out_dir=None if to_stdout else out_dir)
    if to_stdout:
        click.echo(res.manifest.text(), nl=False)
        return
    obj.emit(res.to_json(), f"wrote {res.path} ({len(res.manifest.pieces)} pieces)")


@dot.command("import")
@click.argument("manifest", type=click.Path(path_type=Path))
@click.pass_obj
def dot_import(obj: Ctx, manifest: Path) -> None:
    """Re-create a collection from its manifest through the governed functions.

    Needs the operator-runtime and composer gates open. A malformed manifest
    (the line at fault is named), a file that is not regular UTF-8 text of at
    most 8 MiB, or one that conflicts with the database is refused and changes
    nothing; an identical collection is left as it is.
    """
    m = commands.read_manifest(manifest)  # a bad file: exit 2 before any connection
    res = commands.dot_import(obj.target(), m, actor=_actor(obj))
    obj.emit(res.to_json(), f"{res.status}: {res.collection_key} ({res.created_pieces} piece(s) created)")


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
    _print_answer(obj, commands.gate_open(obj.target(), gate_key, approval_id=approval_id, ttl=ttl, reason=reason,
                                          actor=_actor(obj)))


@gate.command("close")
@click.argument("gate_key")
@click.option("--reason", default="closed by operator", show_default=True)
@click.pass_obj
def gate_close(obj: Ctx, gate_key: str, reason: str) -> None:
    """Close a gate."""
    _print_answer(obj, commands.gate_close(obj.target(), gate_key, reason=reason, actor=_actor(obj)))


@gate.command("watchdog")
@click.pass_obj
def gate_watchdog(obj: Ctx) -> None:
    """Close every governable gate whose open has expired."""
    _print_answer(obj, commands.gate_watchdog(obj.target(), actor=_actor(obj)))


@gate.command("status")
@click.pass_obj
def gate_status(obj: Ctx) -> None:
    """The 9-gate verify: all_safe, all_governed_closed, never_flip_intact."""
    st = commands.gate_status(obj.target(), actor=_actor(obj))
    ans = st.answer
    if obj.as_json:
        obj.emit(st.to_json())
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
    st.raise_for_outcome()


# ---------------------------------------------------------------- runtime
@cli.group(cls=_Group)
def runtime() -> None:
    """The runtime data scripts (runtime/270, runtime/290) and their paired rollbacks.

    Run like a revision: guard → body → assert in one transaction, under the
    migration lock and timeouts, audited, rehearsable; the data goes only
    through the governed functions, gates opened through the protocol.
    """


@runtime.command("list")
@click.pass_obj
def runtime_list(obj: Ctx) -> None:
    """Each script: applied or not (read from the data it creates), its last real run, its sha256."""
    states = datascripts.status(obj.target(), project=obj.project_root())
    if obj.as_json:
        obj.emit([s.to_json() for s in states])
        return
    rows = []
    for s in states:
        last = s.last_run
        rows.append([
            f"runtime/{s.name}",
            {True: "applied", False: "not applied", None: "unknown"}[s.applied],
            f"{last['direction']} by {last['actor']} {last['started_at']:%Y-%m-%d %H:%M:%S}" if last else "never",
            {True: "as run", False: "CHANGED since run", None: "-"}[s.files_as_run],
            "  ".join(f"{f} {sha[:12]}" for f, sha in sorted(s.checksums.items())),
        ])
    click.echo("\n".join(format_table(["script", "state", "last real run", "files", "sha256"], rows)))
    for s in states:
        click.echo(f"  runtime/{s.name}: {s.evidence}")


def _runtime_verb(direction: str) -> Any:
    @click.argument("name")
    @click.option("--approval-id", metavar="UUID",
                  help="The approval the gate openings rest on; the script's guard refuses without one.")
    @click.option("--rehearse", is_flag=True, help="Run everything for real, then ROLLBACK instead of COMMIT.")
    @_timeout_options
    @click.pass_obj
    def verb(obj: Ctx, name: str, approval_id: str | None, rehearse: bool, lock_timeout: str | None,
             statement_timeout: str | None, lock_wait: str | None) -> None:
        opts = _options(obj, rehearse, lock_timeout, statement_timeout, lock_wait)
        run = datascripts.apply if direction == "apply" else datascripts.rollback
        res = run(obj.target(), name, approval_id=approval_id, project=obj.project_root(), options=opts,
                  sink=obj.sink())
        if obj.as_json:
            obj.emit(res.to_json())
        elif res.mode == "rehearsal":
            click.echo(f"iucore: runtime/{res.name} {direction} rehearsed (rolled back) in {res.duration_ms:.0f} ms; "
                       f"nothing persisted: catalog fingerprint and the row counts of "
                       f"{res.tables_counted - len(res.moved_by_others)} IU Core tables unchanged ({res.fingerprint_after})"
                       + (f"; row counts moved by other sessions meanwhile (no extension or language installed could "
                          f"have committed them for the script): {', '.join(res.moved_by_others)}"
                          if res.moved_by_others else ""))
        else:
            click.echo(f"iucore: runtime/{res.name} {direction} applied in {res.duration_ms:.0f} ms "
                       f"(run {res.run_id}); files: "
                       + ", ".join(f"{f} sha256 {sha[:16]}…" for f, sha in sorted(res.checksums.items())))

    verb.__doc__ = {
        "apply": "Apply runtime/NAME: guard → body → assert, one transaction, locked, audited.\n\n"
                 "The guard refuses (exit 3, nothing changed) without an approval id, when the data is "
                 "already there, or while a protocol gate is open.",
        "rollback": "Roll back runtime/NAME with runtime/rollback/NAME: fail-closed guard → body → assert.\n\n"
                    "Refused (exit 3, nothing changed) when the data is not exactly what the script left, "
                    "or something else references it.",
    }[direction]
    return verb


for _direction in ("apply", "rollback"):
    runtime.command(_direction)(_runtime_verb(_direction))


# ---------------------------------------------------------------- proof
def _yes_on_this_database(f: Any) -> Any:
    return click.option(
        "--yes-on-this-database", metavar="NAME",
        help="Write demo/proof data into a database that is not the embedded server; "
             "NAME must be the connected database's name.")(f)


@cli.group(cls=_Group)
def proof() -> None:
    """Reproducible proofs from the operator reports."""


@proof.command("remove")
@click.option("--written-by", "actors", multiple=True, required=True, metavar="ACTOR",
              help="Remove what this actor wrote (repeatable), e.g. runtime_500x_op_proof.")
@click.option("--dry-run", is_flag=True, help="Count and print the SQL, then ROLLBACK.")
@_yes_on_this_database
@click.pass_obj
def proof_remove(obj: Ctx, actors: tuple[str, ...], dry_run: bool, yes_on_this_database: str | None) -> None:
    """Delete every row the named actors wrote (seed 000 §8: DELETE … WHERE actor=…), in one transaction.

    Ledger rows, gate transitions, composer events (and the route attempts and
    dead letters on them), memberships, collections and pieces. Refuses, and
    deletes nothing, when other actors' rows depend on them. The demo writes as
    iucore_demo, runtime_290, runtime_500x_op_proof and
    runtime_500x_op_proof.gate_window; the proof as runtime_500x_op_proof (or
    its --actor) and its gate window as that actor + ".gate_window".
    """
    res = commands.proof_remove(obj.target(), list(actors), dry_run=dry_run, confirm=yes_on_this_database)
    if obj.as_json:
        obj.emit(res.to_json())
        return
    for stmt in res.statements:
        click.echo(stmt)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"iucore: {verb} {res.total} row(s) of {', '.join(res.actors)} in {res.database}: "
               + ", ".join(f"{t} {n}" for t, n in res.counts.items() if n))


@proof.command("operator-runtime")
@click.option("--collection-key", default="iu_core.runtime290.file-001", show_default=True,
              help="The collection to prove on (composed first if absent).")
@click.option("--approval-id", help="Approval (uuid) for opening the gates [a fresh one, printed].")
@click.option("--ttl", default=600, show_default=True, help="TTL of the gate openings, seconds.")
@_yes_on_this_database
@click.pass_obj
def proof_operator_runtime(obj: Ctx, collection_key: str, approval_id: str | None, ttl: int,
                           yes_on_this_database: str | None) -> None:
    """Seed 000's seven-step durable proof: plan → apply → verify → checkpoint → compensate → verify → refused.

    Gates open for the mutating window only and close in `finally`. Exit 0
    only if every step matched, the order is restored, the composer events are
    2 piece_reordered + 1 collection_rendered (delayed lane, distinct ids) and
    the gates end all_safe. Refused on any database but the embedded server
    unless --yes-on-this-database names it; `proof remove` takes it out again.
    """
    res = commands.proof_operator_runtime(obj.target(), actor=obj.flag_actor(), collection_key=collection_key,
                                          approval_id=approval_id, ttl_seconds=ttl, confirm=yes_on_this_database,
                                          say=None if obj.as_json else click.echo)
    if obj.as_json:
        obj.emit(res.to_json())
    else:
        click.echo("\n".join(res.table()))
        click.echo(f"membership order: {' '.join(res.order_before)} → {' '.join(res.order_after)}")
        click.echo(f"composer events: {res.events}")
        g = res.final_gates
        click.echo(f"end-state: all_safe = {g.get('all_safe')} | all_governed_closed = "
                   f"{g.get('all_governed_closed')} | never_flip_intact = {g.get('never_flip_intact')}")
        click.echo(f"ledger actors: {res.actor} (the steps), {res.gate_actor} (the gate window); remove "
                   f"with: iucore proof remove --written-by {res.actor} --written-by {res.gate_actor}")
    res.raise_for_outcome()
    if not obj.as_json:
        click.echo(f"PROOF PASS ({res.duration_ms:.0f} ms)")


# ---------------------------------------------------------------- demo
@cli.command("demo")
@_yes_on_this_database
@click.pass_obj
def demo_cmd(obj: Ctx, yes_on_this_database: str | None) -> None:
    """The whole story on the embedded server: rehearse + apply head, self-tests,
    compose runtime/290, the seven-step proof, a worker dry-run, the inventory
    and the health views, with timings. Running it twice works. Any other
    database is refused unless --yes-on-this-database names it."""
    target = obj.target()
    click.echo(f"iucore demo on {target.display}" + (" (embedded PostgreSQL)" if target.embedded else ""))
    commands.demo(target, obj.project_root(), say=click.echo, actor=obj.flag_actor(),
                  confirm_database=yes_on_this_database)


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
    ans = commands.worker_run(obj.target(), route, limit=limit, actor=_actor(obj))
    if obj.as_json:
        obj.emit(ans.to_json())
    elif isinstance(ans.answer, dict):
        a = ans.answer
        click.echo(f"fn_iu_route_worker_run({route!r}, {limit}) → seen={a.get('seen')}, "
                   f"attempts_written={a.get('attempts_written')}, skipped={a.get('skipped')}, "
                   f"dead_lettered={a.get('dead_lettered')}, dry_run={a.get('dry_run')}")
    ans.raise_for_outcome()


# ---------------------------------------------------------------- server
@cli.group(cls=_Group)
def server() -> None:
    """The embedded PostgreSQL (data under .iucore/ or $IUCORE_HOME)."""


@server.command("start")
@click.pass_obj
def server_start(obj: Ctx) -> None:
    """Start the embedded server (no-op if it runs) and print its URL."""
    st = commands.server_start(obj.settings())
    obj.emit(st.to_json(), st.url)


@server.command("stop")
@click.pass_obj
def server_stop(obj: Ctx) -> None:
    """Stop the embedded server."""
    res = commands.server_stop(obj.settings())
    obj.emit(res.to_json(), "stopped" if res.stopped else "not running")


@server.command("status")
@click.pass_obj
def server_status(obj: Ctx) -> None:
    """Whether the embedded server runs, with its pid, major, data dir and URL."""
    st = commands.server_status(obj.settings()).to_json()
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
    res = commands.server_url(obj.settings())
    obj.emit(res.to_json(), res.url)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="iucore")


if __name__ == "__main__":  # pragma: no cover
    main()
