"""The operator runtime (seed 000 §4): plan / apply / verify of dot_iu_* commands.

Python composes and audits; the SQL functions do the work.

- A plan is a list of statements that are each exactly
  `SELECT public.fn_*(<literals>)` of the command's own target functions.
  `assert_governed` re-checks every statement with PostgreSQL's parser (pglast)
  right before execution: a second statement, a CTE, a subquery, another
  function or schema, a column reference — anything but literal arguments — is
  refused.
- `apply` derives the gates it needs from the plan's target functions and
  refuses, before any plan SQL runs, when one is shut.
- Every call writes exactly one ledger row through fn_dot_iu_command_log, with
  an md5 params_digest and a gate snapshot — never the raw parameters.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BadInput, Failed, Refused
from .registry import BY_NAME, COMMANDS, OPERATOR_RUNTIME, Command, Param

if TYPE_CHECKING:
    import psycopg


class ParamError(BadInput):
    """A missing, unknown or malformed command parameter."""


class NotGoverned(Refused):
    """A plan statement that is not a bare call of the command's own function."""


class CommandRefused(Refused):
    """A shut gate, or the function answered a refusal; nothing changed."""


# Answers that mean "nothing was done" (the function's guidance says why).
REFUSAL_STATUSES = frozenset({
    "refused", "invalid_input", "review_decision_not_found", "duplicate", "not_found",
    "not_soft_deleted", "already_retired", "already_soft_deleted",
})

# Commands whose SQL function writes its own ledger row (the gate protocol):
# the runtime adds none on success, so a call still leaves exactly one.
SELF_LOGGING = frozenset({"fn_iu_gate_open", "fn_iu_gate_close", "fn_iu_gate_watchdog"})
# The gate protocol is how gates open; requiring a gate to open one is circular.
# The route worker is dry-run by construction; delivery gating is inside it.
NO_RUNTIME_GATE = frozenset({
    "dot_iu_gate_open", "dot_iu_gate_close", "dot_iu_gate_watchdog", "dot_iu_gate_verify_closed",
    "dot_iu_route_worker_run",
})


def command(name: str) -> Command:
    try:
        return BY_NAME[name]
    except KeyError:
        close = [c.name for c in COMMANDS if name.replace("dot_iu_", "") in c.name]
        raise BadInput(f"unknown command {name!r}" + (f"; did you mean {', '.join(close[:3])}?" if close
                       else "; see 'iucore dot list'"), command=name) from None


# ---------------------------------------------------------------- parameters
# Deeper JSON is not a parameter anyone means; it would also exhaust Python's
# and PostgreSQL's recursion limits on the way (json, psycopg, jsonb input).
MAX_JSON_DEPTH = 64


def _not_text(s: str) -> str | None:
    """What keeps S from being sent as text (a NUL byte, a lone surrogate), or None."""
    for i, c in enumerate(s):
        if c == "\x00":
            return f"a NUL byte at position {i + 1}"
        if 0xD800 <= ord(c) < 0xE000:
            return f"a lone surrogate U+{ord(c):04X} at position {i + 1}"
    return None


def _json_problem(value: Any) -> str | None:
    """Why VALUE cannot be a jsonb parameter, or None; iterative, so depth cannot blow the stack.

    Nesting beyond MAX_JSON_DEPTH, and strings (keys included) holding a NUL
    or a lone surrogate, which JSON's \\u escapes can spell but jsonb cannot store.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            why = _not_text(v)
            if why is not None:
                return f"the string {v[:40]!r} holds {why}"
        elif isinstance(v, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(v, dict):
                stack.extend((k, depth) for k in v)
                stack.extend((c, depth + 1) for c in v.values())
            else:
                stack.extend((c, depth + 1) for c in v)
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_loads(s: str) -> Any:
    """json.loads refusing NaN/Infinity, deep nesting and untextable strings (ValueError)."""
    try:
        value = json.loads(s, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    why = _json_problem(value)
    if why is not None:
        raise ValueError(why)
    return value


def parse_params(cmd: Command, pairs: list[str] | dict[str, Any]) -> dict[str, Any]:
    """key=value pairs → typed values, checked against the command's parameters."""
    raw: dict[str, Any] = {}
    if isinstance(pairs, dict):
        raw = dict(pairs)
    else:
        for pair in pairs:
            key, sep, value = pair.partition("=")
            why = _not_text(key)
            if why is not None:
                raise ParamError(f"{cmd.name}: parameter name {key[:60]!r} is not valid UTF-8 text ({why})",
                                 command=cmd.name)
            if not sep or not key:
                raise ParamError(f"{cmd.name}: parameter {pair!r} is not key=value", command=cmd.name)
            if key in raw:
                raise ParamError(f"{cmd.name}: parameter {key!r} given twice", command=cmd.name)
            raw[key] = value
    known = {p.name: p for p in cmd.params if p.fixed is None}
    unknown = sorted(set(raw) - set(known), key=repr)
    if unknown:
        names = [k if isinstance(k, str) and _not_text(k) is None else repr(k) for k in unknown]
        raise ParamError(
            f"{cmd.name}: unknown parameter(s) {', '.join(names)}; it takes "
            f"{', '.join(p.name for p in known.values()) or 'no parameters'}", command=cmd.name)
    out: dict[str, Any] = {}
    for p in known.values():
        if p.name in raw:
            out[p.name] = convert(cmd, p, raw[p.name])
        elif p.required and p.name != "actor":  # the actor defaults to who runs the command
            raise ParamError(f"{cmd.name}: missing parameter {p.name} ({p.type})", command=cmd.name)
    return out


def convert(cmd: Command, p: Param, value: Any) -> Any:
    def bad(why: str) -> ParamError:
        shown = repr(value)
        shown = shown if len(shown) <= 120 else f"{shown[:100]}… ({len(shown):,} characters)"
        return ParamError(f"{cmd.name}: {p.name}={shown} is not {why}", command=cmd.name, param=p.name)

    if not isinstance(value, str):
        why = _json_problem(value) if p.type == "jsonb" else None
        if why is not None:
            raise bad(f"valid JSON ({why})")
        try:
            value = json.dumps(value, allow_nan=False) if p.type == "jsonb" else str(value)
        except (ValueError, TypeError) as exc:
            raise bad(f"valid JSON ({exc})") from None
    why = _not_text(value)
    if why is not None:
        raise bad(f"valid UTF-8 text ({why})")
    t = p.type
    if t == "text":
        return value
    if t == "uuid":
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise bad("a uuid") from None
    if t == "integer":
        try:
            n = int(value.strip(), 10)
        except ValueError:
            raise bad("an integer") from None
        if not -(2**31) <= n < 2**31:
            raise bad("a 32-bit integer")
        return n
    if t == "boolean":
        v = value.strip().lower()
        if v in ("true", "t", "yes", "y", "1", "on"):
            return True
        if v in ("false", "f", "no", "n", "0", "off"):
            return False
        raise bad("a boolean (true/false)")
    if t == "jsonb":
        try:
            return _json_loads(value)
        except ValueError as exc:
            raise bad(f"valid JSON ({exc})") from None
    if t in ("uuid[]", "text[]"):
        items: list[Any]
        s = value.strip()
        if s.startswith("["):
            try:
                items = _json_loads(s)
            except ValueError as exc:
                raise bad(f"a JSON array or comma-separated list ({exc})") from None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise bad("a list of strings")
        else:
            items = [i.strip() for i in s.split(",")] if s else []
        if t == "uuid[]":
            try:
                return [str(uuid.UUID(i)) for i in items]
            except ValueError:
                raise bad("a list of uuids") from None
        return items
    raise bad(f"a supported type ({t})")


# ---------------------------------------------------------------- literals & plans
def quote(s: str) -> str:
    """A standard SQL string literal (standard_conforming_strings is on since 9.1)."""
    return "'" + s.replace("'", "''") + "'"


def literal(p: Param, value: Any) -> str:
    if value is None:
        return f"NULL::{p.type}"
    t = p.type
    if t == "text":
        return quote(value)
    if t == "uuid":
        return f"{quote(value)}::uuid"
    if t == "integer":
        return str(int(value))
    if t == "boolean":
        return "true" if value else "false"
    if t == "jsonb":
        return f"{quote(json.dumps(value, sort_keys=True, ensure_ascii=False))}::jsonb"
    if t == "uuid[]":
        return "ARRAY[" + ", ".join(f"{quote(v)}::uuid" for v in value) + "]::uuid[]"
    if t == "text[]":
        return "ARRAY[" + ", ".join(quote(v) for v in value) + "]::text[]"
    raise ValueError(t)


def render_call(cmd: Command, params: dict[str, Any]) -> str:
    """`SELECT public.fn(<literals>)`, positional, trailing omitted optionals left to their defaults."""
    args: list[str] = []
    pending: list[str] = []  # optional params not given, kept only if a later one is
    for p in cmd.params:
        if p.fixed is not None:
            value: Any = p.fixed
        elif p.name in params:
            value = params[p.name]
        else:
            pending.append(literal(p, p.default))
            continue
        args += [*pending, literal(p, value)]
        pending = []
    return f"SELECT public.{cmd.targets[0]}({', '.join(args)})"


def params_digest(cmd: Command, params: dict[str, Any]) -> str:
    """md5 of the canonical parameters: the ledger keeps this, never the values."""
    blob = json.dumps({"command": cmd.name, "params": params}, sort_keys=True, default=str)
    return hashlib.md5(blob.encode()).hexdigest()


@dataclass
class DotCommandPlan:
    command: Command
    params: dict[str, Any]
    statements: list[str]
    digest: str

    @property
    def target_functions(self) -> list[str]:
        return list(self.command.targets)


def build_plan(cmd: Command, params: dict[str, Any]) -> DotCommandPlan:
    plan = DotCommandPlan(cmd, params, [render_call(cmd, params)], params_digest(cmd, params))
    assert_governed(plan)
    return plan


_ALLOWED_TYPES = {"uuid", "text", "int4", "integer", "bool", "boolean", "jsonb", "int8", "bigint"}


def assert_governed(plan: DotCommandPlan) -> None:
    """Every statement is exactly `SELECT public.<own target fn>(<literals>)`, or NotGoverned."""
    from pglast import ast, parse_sql
    from pglast.parser import ParseError

    allowed_fns = set(plan.command.targets)
    for sql in plan.statements:
        def refuse(why: str, sql: str = sql) -> NotGoverned:
            return NotGoverned(f"{plan.command.name}: plan statement refused ({why}): {sql[:120]!r}",
                               command=plan.command.name)

        try:
            stmts = parse_sql(sql)
        except ParseError as exc:
            raise refuse(f"does not parse: {exc}") from None
        if len(stmts) != 1:
            raise refuse(f"{len(stmts)} statements, exactly one allowed")
        st = stmts[0].stmt
        if not isinstance(st, ast.SelectStmt):
            raise refuse(f"{type(st).__name__}, only SELECT")
        for clause in ("distinctClause", "intoClause", "fromClause", "whereClause", "groupClause",
                       "havingClause", "windowClause", "valuesLists", "sortClause", "limitOffset",
                       "limitCount", "lockingClause", "withClause", "larg", "rarg"):
            if getattr(st, clause, None):
                raise refuse(f"{clause} not allowed")
        if st.op is not None and st.op.name != "SETOP_NONE":
            raise refuse("set operation not allowed")
        targets = st.targetList or ()
        if len(targets) != 1 or not isinstance(targets[0], ast.ResTarget) or targets[0].name:
            raise refuse("exactly one unnamed call in the select list")
        call = targets[0].val
        if not isinstance(call, ast.FuncCall):
            raise refuse("not a function call")
        names = [n.sval for n in call.funcname or ()]
        if len(names) != 2 or names[0] != "public" or names[1] not in allowed_fns:
            raise refuse(f"calls {'.'.join(names)}; allowed: public.{', public.'.join(sorted(allowed_fns))}")
        if call.agg_star or call.agg_distinct or call.agg_order or call.agg_filter or call.over \
                or call.func_variadic or call.agg_within_group:
            raise refuse("aggregate/window/variadic decoration")
        for arg in call.args or ():
            _assert_literal(arg, refuse)


def _assert_literal(node: Any, refuse: Any) -> None:
    from pglast import ast

    if isinstance(node, ast.NamedArgExpr):
        return _assert_literal(node.arg, refuse)
    if isinstance(node, ast.A_Const):
        return None
    if isinstance(node, ast.TypeCast):
        names = [n.sval for n in (node.typeName.names if node.typeName else None) or ()]
        if not names:
            raise refuse("cast without a type")
        if not (names[-1] in _ALLOWED_TYPES and (len(names) == 1 or names[:-1] == ["pg_catalog"])):
            raise refuse(f"cast to {'.'.join(names)}")
        return _assert_literal(node.arg, refuse)
    if isinstance(node, ast.A_ArrayExpr):
        for el in node.elements or ():
            _assert_literal(el, refuse)
        return None
    raise refuse(f"argument is a {type(node).__name__}, only literals allowed")


# ---------------------------------------------------------------- the runtime
@dataclass
class RunAnswer:
    command: str
    mode: str  # plan | apply | verify
    status: str  # planned | applied | verified | refused | failed
    sql: list[str]
    answer: Any = None
    closed_gates: list[str] = field(default_factory=list)
    gate_snapshot: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    duration_ms: float = 0.0
    guidance: str | None = None
    next_action: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def gates_for(plan: DotCommandPlan) -> list[str]:
    """Gates the plan needs, derived from its target functions (seed 000 §4)."""
    gates: list[str] = []
    by_fn: dict[str, set[str]] = {}
    for c in COMMANDS:
        for fn in c.targets:
            by_fn.setdefault(fn, set()).update(c.gates)
    if plan.command.name not in NO_RUNTIME_GATE:
        gates.append(OPERATOR_RUNTIME)
    for fn in plan.target_functions:
        gates += sorted(by_fn.get(fn, set()) - set(gates))
    for param, value, extra in plan.command.gates_when:
        if plan.params.get(param) == value:
            gates += [g for g in extra if g not in gates]
    return gates


class OperatorRuntime:
    """plan / apply / verify through the governed functions, one ledger row per call."""

    def __init__(self, conn: psycopg.Connection[Any], actor: str) -> None:
        self.conn = conn  # autocommit; each call manages its own transaction
        self.actor = actor
        self._catalog: frozenset[str] | None = None

    # -- availability ---------------------------------------------------------
    def available(self, cmd: Command) -> bool:
        # The catalog changes only by migration: read it once per runtime,
        # not on every call (a round trip saved per command).
        if self._catalog is None or cmd.name not in self._catalog:
            exists = self.conn.execute(
                "SELECT to_regclass('public.dot_iu_command_catalog') IS NOT NULL").fetchone() == (True,)
            self._catalog = frozenset(
                r[0] for r in self.conn.execute("SELECT command_name FROM public.dot_iu_command_catalog")
            ) if exists else frozenset()
        return cmd.name in self._catalog

    def _require_available(self, cmd: Command) -> None:
        if not self.available(cmd):
            from .fingerprint import current_heads

            at = ", ".join(current_heads(self.conn)) or "base"
            raise BadInput(f"{cmd.name} is not available: revision {cmd.revision} is not applied "
                           f"(database at {at})", command=cmd.name)

    def _with_actor(self, cmd: Command, params: dict[str, Any]) -> dict[str, Any]:
        if any(p.name == "actor" for p in cmd.params) and "actor" not in params:
            return {**params, "actor": self.actor}
        return params

    # -- verbs ------------------------------------------------------------------
    def plan(self, name: str, params: dict[str, Any]) -> RunAnswer:
        cmd = command(name)
        self._require_available(cmd)
        plan = build_plan(cmd, self._with_actor(cmd, params))
        gates = gates_for(plan)
        snap = self._gate_snapshot(gates)
        ans = RunAnswer(cmd.name, "plan", "planned", plan.statements, gate_snapshot=snap,
                        closed_gates=[g for g in gates if snap.get(g) != "true"])
        ans.run_id = self._log(cmd, "plan", "planned", plan.digest, snap,
                               {"statements": len(plan.statements), "closed_gates": ans.closed_gates})
        return ans

    def verify(self, name: str, params: dict[str, Any]) -> RunAnswer:
        cmd = command(name)
        if cmd.mutating:
            raise BadInput(f"{cmd.name} mutates; verify runs read commands only (use apply)", command=cmd.name)
        return self._execute(cmd, params, "verify", gated=False)

    def apply(self, name: str, params: dict[str, Any]) -> RunAnswer:
        return self._execute(command(name), params, "apply", gated=True)

    # -- internals --------------------------------------------------------------
    def _execute(self, cmd: Command, params: dict[str, Any], mode: str, gated: bool) -> RunAnswer:
        import psycopg

        self._require_available(cmd)
        plan = build_plan(cmd, self._with_actor(cmd, params))
        gates = gates_for(plan) if gated else []
        snap = self._gate_snapshot(gates)
        ans = RunAnswer(cmd.name, mode, "refused", plan.statements, gate_snapshot=snap)
        ans.closed_gates = [g for g in gates if snap.get(g) != "true"]
        if ans.closed_gates:
            ans.guidance = f"gate(s) shut: {', '.join(ans.closed_gates)}; open through the gate protocol"
            ans.next_action = "open_gate_first"
            ans.run_id = self._log(cmd, mode, "refused", plan.digest, snap,
                                   {"closed_gates": ans.closed_gates, "reason": "gate_closed"})
            return ans
        t0 = time.perf_counter()
        conn = self.conn
        try:
            with conn.transaction():
                assert_governed(plan)  # once more, right before execution
                results = [conn.execute(s).fetchone() for s in plan.statements]
                answer = results[-1][0] if results and results[-1] else None
                ans.answer = answer
                ans.duration_ms = round((time.perf_counter() - t0) * 1000, 2)
                status, evidence = self._judge(cmd, mode, answer)
                ans.status = status
                if isinstance(answer, dict):
                    ans.guidance = answer.get("guidance")
                    ans.next_action = answer.get("next_action")
                if status in ("refused", "failed"):
                    raise _Undo()
                if not (set(plan.target_functions) & SELF_LOGGING):
                    ans.run_id = self._log(cmd, mode, status, plan.digest, snap, evidence)
        except _Undo:
            ans.run_id = self._log(cmd, mode, ans.status, plan.digest, snap,
                                   {"answer_status": _status_of(ans.answer), "reason": "function_answer"})
        except psycopg.Error as exc:
            sqlstate = exc.sqlstate or ""
            ans.status = "refused" if sqlstate in ("42501", "23514", "P0001") else "failed"
            msg = (exc.diag.message_primary if exc.diag else None) or str(exc)
            ans.answer = {"status": ans.status, "sqlstate": sqlstate, "error": msg}
            ans.guidance = msg
            ans.run_id = self._log(cmd, mode, ans.status, plan.digest, snap,
                                   {"sqlstate": sqlstate, "reason": "sql_error"})
        return ans

    def _judge(self, cmd: Command, mode: str, answer: Any) -> tuple[str, dict[str, Any]]:
        st = _status_of(answer)
        evidence: dict[str, Any] = {"answer_status": st}
        if st in REFUSAL_STATUSES:
            return "refused", evidence
        if isinstance(answer, dict) and answer.get("ok") is False:
            return "failed", evidence
        return ("verified" if mode == "verify" else "applied"), evidence

    def _gate_snapshot(self, gates: list[str]) -> dict[str, str]:
        if not gates:
            return {}
        rows = self.conn.execute(
            "SELECT key, value FROM public.dot_config WHERE key = ANY(%s)", (gates,)
        ).fetchall()
        found = dict(rows)
        return {g: found.get(g, "missing") for g in gates}  # a missing gate is shut: fail closed

    def _log(self, cmd: Command, mode: str, status: str, digest: str, snap: dict[str, str],
             evidence: dict[str, Any]) -> str:
        row = self.conn.execute(
            "SELECT public.fn_dot_iu_command_log(%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)",
            (cmd.name, cmd.category, mode, status, cmd.mutating, digest,
             json.dumps(snap), json.dumps(evidence), self.actor),
        ).fetchone()
        return str(row[0]) if row else ""


class _Undo(Exception):
    """Roll back the plan's transaction (a refusal answer); the ledger row follows."""


def _status_of(answer: Any) -> str | None:
    return answer.get("status") if isinstance(answer, dict) else None


def explain(name: str, pairs: list[str], actor: str | None = None) -> str:
    """The ready-to-run governed SQL for a command (seed 004's `explain`)."""
    cmd = command(name)
    params = parse_params(cmd, pairs)
    if actor and any(p.name == "actor" for p in cmd.params) and "actor" not in params:
        params["actor"] = actor
    missing = [p.name for p in cmd.params if p.required and p.fixed is None and p.name not in params]
    if missing:
        raise ParamError(f"{cmd.name}: missing parameter(s) {', '.join(missing)}", command=cmd.name)
    return build_plan(cmd, params).statements[0] + ";"


def ensure_answer(ans: RunAnswer) -> RunAnswer:
    """Raise the matching error for a refused or failed answer (the CLI's exit code)."""
    if ans.status == "refused":
        why = ans.guidance or (f"closed gates: {ans.closed_gates}" if ans.closed_gates else "refused")
        raise CommandRefused(f"{ans.command} {ans.mode} refused: {why}"
                             + (f" (next: {ans.next_action})" if ans.next_action else ""),
                             closed_gates=ans.closed_gates)
    if ans.status == "failed":
        raise Failed(f"{ans.command} {ans.mode} failed: {ans.guidance or ans.answer}")
    return ans


# ---------------------------------------------------------------- library verbs
def list_commands(conn: psycopg.Connection[Any] | None) -> list[dict[str, Any]]:
    """Every registered command, with whether the database at hand can run it."""
    present: set[str] = set()
    if conn is not None and conn.execute(
        "SELECT to_regclass('public.dot_iu_command_catalog') IS NOT NULL"
    ).fetchone() == (True,):
        present = {r[0] for r in conn.execute("SELECT command_name FROM public.dot_iu_command_catalog")}
    return [
        {"command": c.name, "category": c.category, "mutating": c.mutating, "reversible": c.reversible,
         "governed": c.governed, "revision": c.revision, "available": c.name in present,
         "targets": list(c.targets), "gates": gates_for(DotCommandPlan(c, {}, [], "")),
         "params": [f"{p.name}:{p.type}{'' if p.required else '?'}" for p in c.params if p.fixed is None],
         "doc": c.doc}
        for c in COMMANDS
    ]


def run_command(conn: psycopg.Connection[Any], mode: str, name: str, pairs: list[str] | dict[str, Any],
                actor: str) -> RunAnswer:
    """plan | apply | verify a command with key=value parameters (checked before the database)."""
    cmd = command(name)
    params = parse_params(cmd, pairs)
    rt = OperatorRuntime(conn, actor)
    if mode == "plan":
        return rt.plan(cmd.name, params)
    if mode == "verify":
        return rt.verify(cmd.name, params)
    if mode == "apply":
        return rt.apply(cmd.name, params)
    raise BadInput(f"unknown mode {mode!r}")
