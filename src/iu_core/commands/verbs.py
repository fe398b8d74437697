"""The `iucore` verbs outside `db` as library functions, one per verb (alembic's `command.py`).

`iu_core.cli` parses, calls one of these, renders the report it gets back as
text or JSON and maps errors to exit codes; nothing else. The `db` verbs live
in `iu_core.framework.migrate` (the runs) and `iu_core.commands.db` (release
engineering), the `runtime` verbs in `iu_core.release.datascripts`, in the
same shape. Each function takes a target (or what the verb works on: a
project, the settings of the embedded server) and options, connects if it
needs to, and returns a report with `to_json()` (the `--json` document,
unchanged), or raises from the one exception tree in `iu_core.errors`.

A report whose content can be a failure (a refused command, gates not all
safe, a failed proof, a self-test mismatch, lint findings) has
`raise_for_outcome()`: the CLI shows the report first and then calls it, so
the evidence is printed and the exit code still says what happened.

Checks of the input that must come before the target is resolved (the
embedded server started, a URL parsed) are separate functions the CLI calls
first: `dot_params`, `require_roles`, `read_manifest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunOptions, Settings
from ..domain.demodata import DEMO_ACTORS, Removal, guard_writes, remove
from ..domain.manifests import Manifest, export, import_manifest, read_manifest, write_manifest
from ..domain.proof import DEFAULT_ACTOR as PROOF_ACTOR
from ..domain.proof import DEFAULT_COLLECTION, ProofResult, run_proof
from ..domain.roles import GrantPlan, apply_all, plan_operator, plan_readonly
from ..domain.runtime import (
    RunAnswer,
    ensure_answer,
    explain,
    list_commands,
    parse_params,
    run_command,
)
from ..domain.runtime import command as lookup
from ..errors import BadInput, CheckFailed, Failed, LockRetriesExhausted
from ..framework.migrate import reading
from ..framework.migrate import selftest as run_selftests
from ..framework.selftest import SelftestResult
from ..framework.transcript import Sink
from ..pg.db import connect
from ..pg.server import EmbeddedServer
from ..pg.target import Target
from ..release.lint import Finding, lint_project
from .demo import Demo

NEEDS_DOT_LIST = ("dot list reads public.dot_iu_command_catalog: GRANT SELECT ON public.dot_iu_command_catalog, "
                  "or give the role the operator policy (iucore db grant --operator ROLE)")

__all__ = [
    "CommandList", "DemoReport", "Explanation", "GateStatus", "GrantReport", "ImportReport", "LintReport",
    "Rendered", "SelftestReport", "ServerState", "ServerStopped", "ServerUrl",
    "demo", "dot_explain", "dot_import", "dot_list", "dot_params", "dot_render", "dot_run",
    "gate_close", "gate_open", "gate_status", "gate_watchdog", "grant", "lint", "proof_operator_runtime",
    "proof_remove", "read_manifest", "require_roles", "selftest", "server_start", "server_status",
    "server_stop", "server_url", "worker_run",
]

DEMO_ACTOR = DEMO_ACTORS[0]  # what `iucore demo` writes as without --actor


# ---------------------------------------------------------------- dot
@dataclass
class CommandList:
    """`dot list`: every registered command and whether the database at hand can run it."""

    rows: list[dict[str, Any]]

    def to_json(self) -> list[dict[str, Any]]:
        return self.rows


def dot_list(target: Target) -> CommandList:
    """The registry's commands, with availability read from the live catalog."""
    with reading(target, NEEDS_DOT_LIST) as conn:
        return CommandList(list_commands(conn))


@dataclass
class Explanation:
    """`dot explain`: the ready-to-run governed SQL of a command."""

    command: str
    sql: str

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "sql": self.sql}


def dot_explain(command: str, params: list[str], *, actor: str | None = None) -> Explanation:
    """The governed SQL for COMMAND key=value… (seed 004's `explain`); no database."""
    return Explanation(command, explain(command, params, actor=actor))


def dot_params(command: str, params: list[str]) -> dict[str, Any]:
    """COMMAND's key=value parameters, checked and typed: a bad one is exit 2 before any connection."""
    return parse_params(lookup(command), params)


def dot_run(target: Target, mode: str, command: str, params: list[str], *, actor: str) -> RunAnswer:
    """plan | apply | verify COMMAND key=value… through the governed entry point (one ledger row).

    The answer is returned refused or failed as the database said;
    `raise_for_outcome()` turns that into the exit code.
    """
    dot_params(command, params)
    with connect(target) as conn:
        return run_command(conn, mode, command, params, actor)


@dataclass
class Rendered:
    """`dot render`: a collection as a manifest, and where it was written (None: not written)."""

    manifest: Manifest
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "pieces": len(self.manifest.pieces)}


def dot_render(target: Target, collection_key: str, *, out_dir: Path | None) -> Rendered:
    """Export COLLECTION_KEY as a manifest and write it under OUT_DIR (None: only export it).

    Nothing is written outside OUT_DIR (textcode.write_manifest).
    """
    with connect(target) as conn:
        m = export(conn, collection_key)
    return Rendered(m, write_manifest(m, out_dir) if out_dir is not None else None)


@dataclass
class ImportReport:
    """`dot import`: imported or in_sync, the collection and the pieces created."""

    result: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.result["status"])

    @property
    def collection_key(self) -> str:
        return str(self.result["collection_key"])

    @property
    def created_pieces(self) -> int:
        return int(self.result["created_pieces"])

    def to_json(self) -> dict[str, Any]:
        return self.result


def dot_import(target: Target, manifest: Manifest, *, actor: str) -> ImportReport:
    """Re-create MANIFEST's collection through the governed functions (read it with read_manifest)."""
    with connect(target) as conn:
        return ImportReport(import_manifest(conn, manifest, actor))


# ---------------------------------------------------------------- gate
def _governed(target: Target, command: str, params: dict[str, str], actor: str) -> RunAnswer:
    with connect(target) as conn:
        return run_command(conn, "apply", command, params, actor)


def gate_open(target: Target, gate_key: str, *, approval_id: str, ttl: int, reason: str, actor: str) -> RunAnswer:
    """Open a governable gate for TTL seconds on an approval; never-flip and others are refused."""
    return _governed(target, "dot_iu_gate_open", {"gate_key": gate_key, "approval_id": approval_id,
                                                  "reason": reason, "ttl_seconds": str(ttl)}, actor)


def gate_close(target: Target, gate_key: str, *, reason: str, actor: str) -> RunAnswer:
    """Close a gate."""
    return _governed(target, "dot_iu_gate_close", {"gate_key": gate_key, "reason": reason}, actor)


def gate_watchdog(target: Target, *, actor: str) -> RunAnswer:
    """Close every governable gate whose open has expired."""
    return _governed(target, "dot_iu_gate_watchdog", {}, actor)


@dataclass
class GateStatus:
    """`gate status`: the gate verify's answer (all_safe, all_governed_closed, never_flip_intact, gates)."""

    answer: RunAnswer

    def to_json(self) -> dict[str, Any]:
        return self.answer.to_json()

    def raise_for_outcome(self) -> None:
        """The verify's own refusal or failure, else CheckFailed (exit 4) when not all gates are safe."""
        ensure_answer(self.answer)
        if isinstance(self.answer.answer, dict) and self.answer.answer.get("all_safe") is False:
            raise CheckFailed("gates not all safe", answer=self.answer.answer)


def gate_status(target: Target, *, actor: str) -> GateStatus:
    """The 9-gate verify (dot_iu_gate_verify_closed), one ledger row."""
    with connect(target) as conn:
        return GateStatus(run_command(conn, "verify", "dot_iu_gate_verify_closed", {}, actor))


# ---------------------------------------------------------------- worker
def worker_run(target: Target, route: str, *, limit: int, actor: str) -> RunAnswer:
    """Run the route worker once on ROUTE: seen / attempts_written / skipped / dead_lettered."""
    return _governed(target, "dot_iu_route_worker_run", {"route_code": route, "limit": str(limit)}, actor)


# ---------------------------------------------------------------- db grant
@dataclass
class GrantReport:
    """`db grant`: the policy applied (or, dry run, that would be) to each role."""

    plans: list[GrantPlan]
    dry_run: bool = False

    def to_json(self) -> list[dict[str, Any]]:
        return [{"role": p.role, "kind": p.kind, "statements": p.statements} for p in self.plans]


def require_roles(readonly_roles: list[str], operator_roles: list[str]) -> None:
    """Bad input (exit 2) unless at least one role is named: before any connection."""
    if not readonly_roles and not operator_roles:
        raise BadInput("name at least one role: --readonly ROLE and/or --operator ROLE")


def grant(target: Target, *, readonly_roles: list[str], operator_roles: list[str],
          dry_run: bool = False) -> GrantReport:
    """The read-only and operator policies, derived from the live catalog, applied to existing roles
    in ONE transaction (all or none); `dry_run`: only planned."""
    require_roles(readonly_roles, operator_roles)
    with connect(target) as conn:
        plans = [plan_readonly(conn, r) for r in readonly_roles] + [plan_operator(conn, r) for r in operator_roles]
        if not dry_run:
            apply_all(conn, plans)
    return GrantReport(plans, dry_run)


# ---------------------------------------------------------------- proof, demo
def proof_remove(target: Target, actors: list[str], *, dry_run: bool = False,
                 confirm: str | None = None) -> Removal:
    """Delete every row ACTORS wrote, in one transaction (demodata.remove); `dry_run` rolls back."""
    with connect(target, autocommit=False) as conn:
        return remove(conn, target, actors, confirm=confirm, dry_run=dry_run)


def proof_operator_runtime(target: Target, *, actor: str | None = None,
                           collection_key: str = DEFAULT_COLLECTION, approval_id: str | None = None,
                           ttl_seconds: int = 600, confirm: str | None = None,
                           say: Callable[[str], None] | None = None) -> ProofResult:
    """Seed 000's seven-step durable proof; refused on any database but the embedded server
    unless `confirm` names it. A proof that did not match is returned; `raise_for_outcome()`."""
    with connect(target) as conn:
        guard_writes(conn, target, confirm, "the operator-runtime proof")
        return run_proof(conn, actor=actor or PROOF_ACTOR, collection_key=collection_key,
                         approval_id=approval_id, ttl_seconds=ttl_seconds, say=say)


@dataclass
class DemoReport:
    """`demo`: each step and how long it took."""

    timings: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"step": title, "ms": round(ms, 1)} for title, ms in self.timings]


def demo(target: Target, project: Path, *, say: Callable[[str], None], actor: str | None = None,
         confirm_database: str | None = None) -> DemoReport:
    """The whole story (iu_core.commands.demo), told through `say` as it happens."""
    return DemoReport(Demo(target, project, say, actor=actor or DEMO_ACTOR,
                           confirm_database=confirm_database).run())


# ---------------------------------------------------------------- lint, selftest
@dataclass
class LintReport:
    """`lint`: the static gates' findings over the project's shipped files."""

    findings: list[Finding]

    def to_json(self) -> list[dict[str, Any]]:
        return [f.__dict__ for f in self.findings]

    def raise_for_outcome(self) -> None:
        """CheckFailed (exit 4) naming each finding, unless there is none."""
        if self.findings:
            raise CheckFailed(f"lint: {len(self.findings)} finding(s)", findings=[str(f) for f in self.findings])


def lint(project: Path) -> LintReport:
    """Parse, SECURITY DEFINER search_path, REVOKE FROM PUBLIC, timeouts, secrets; no database."""
    return LintReport(lint_project(project))


@dataclass
class SelftestReport:
    """`selftest`: one result per self-test (passed, failed, mismatch, skipped, recorded, refused)."""

    results: list[SelftestResult]

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.results]

    def raise_for_outcome(self) -> None:
        """Failed (exit 1) when one raised or persisted, else LockRetriesExhausted (exit 3) when one
        never got its locks, else CheckFailed (exit 4) when a transcript differs."""
        failed = [r for r in self.results if r.status == "failed"]
        mismatched = [r for r in self.results if r.status == "mismatch"]
        refused = [r for r in self.results if r.status == "refused"]
        if failed:
            raise Failed("self-test failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed))
        if refused:
            raise LockRetriesExhausted("self-test could not get its locks: "
                                       + "; ".join(f"{r.name}: {r.reason}" for r in refused),
                                       selftests=[r.name for r in refused])
        if mismatched:
            raise CheckFailed("self-test transcript mismatch: " + ", ".join(r.name for r in mismatched))


def selftest(target: Target, names: list[str] | None = None, *, project: Path | None = None,
             record: bool = False, options: RunOptions | None = None, sink: Sink | None = None,
             actor: str | None = None) -> SelftestReport:
    """Replay the applied revisions' self-tests against their transcripts, audited (migrate.selftest)."""
    return SelftestReport(run_selftests(target, names, project=project, record=record, options=options,
                                        sink=sink, actor=actor))


# ---------------------------------------------------------------- server
@dataclass
class ServerState:
    """`server start` / `server status`: the embedded server's state (pid, major, data dir, URL…)."""

    state: dict[str, Any]
    url: str | None = None  # the URL it was started at (`server start`)

    def to_json(self) -> dict[str, Any]:
        return self.state


@dataclass
class ServerStopped:
    stopped: bool

    def to_json(self) -> dict[str, Any]:
        return {"stopped": self.stopped}


@dataclass
class ServerUrl:
    url: str

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url}


def server_start(settings: Settings) -> ServerState:
    """Start the embedded server the settings name (a no-op if it runs)."""
    s = EmbeddedServer.from_settings(settings)
    url = s.ensure_running()
    return ServerState(s.status(), url)


def server_stop(settings: Settings) -> ServerStopped:
    """Stop the embedded server; `stopped` False when it was not running."""
    return ServerStopped(EmbeddedServer.from_settings(settings).stop())


def server_status(settings: Settings) -> ServerState:
    """Whether the embedded server runs, with its pid, major, data dir and URL."""
    return ServerState(EmbeddedServer.from_settings(settings).status())


def server_url(settings: Settings) -> ServerUrl:
    """The embedded server's URL, starting it if needed."""
    return ServerUrl(EmbeddedServer.from_settings(settings).ensure_running())
