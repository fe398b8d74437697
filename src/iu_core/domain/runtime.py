"""The operator runtime (seed 000 §4): plan / apply / verify of dot_iu_* commands.

Python checks the parameters and shows the SQL; the database decides and
records. Every call is ONE statement,

    SELECT public.fn_dot_iu_execute($1, $2, $3::jsonb, $4)

sent with server-side bound parameters (psycopg's extended protocol, never a
multi-statement simple query): the command name, the mode, the command's
arguments as a JSON array in its target function's order, and the actor. The
dispatcher (revision least_privilege, SECURITY DEFINER) looks the command up in
the catalog, checks the gates it needs before calling anything, calls the
target function with each argument cast to the function's own type — a value
never becomes SQL text — undoes a refused call, and writes exactly one ledger
row (an md5 digest, never the raw parameters, and the session user). Gate
read, call and ledger row: one round trip. Below least_privilege there is no
governed entry point, and the runtime refuses rather than keep a second path.

- `assert_governed` re-checks, with PostgreSQL's parser (pglast), both the
  statement executed (exactly the dispatcher call above, parameters only) and
  the statement shown (`SELECT public.fn_*(<literals>)` of the command's own
  target function, literal arguments only).
- `explain` and the plan's shown SQL render literals for reading, quoted so
  that no session setting can reinterpret them (a plain '…' literal only for
  text without a quote or a backslash, dollar-quoting otherwise): psql runs
  exactly what `explain` prints.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, Failed, Refused
from ..framework.fingerprint import current_heads
from .registry import BY_NAME, COMMANDS, OPERATOR_RUNTIME, Command, Param

if TYPE_CHECKING:
    import psycopg

# The revision that installs the governed entry point, and the statement that calls it.
DISPATCHER_REVISION = "least_privilege"
DISPATCHER = "public.fn_dot_iu_execute(text,text,jsonb,text)"
DISPATCH_SQL = "SELECT public.fn_dot_iu_execute(%s, %s, %s::jsonb, %s)"

# The gate protocol is how gates open; requiring a gate to open one is circular.
# The route worker is dry-run by construction; delivery gating is inside it.
NO_RUNTIME_GATE = frozenset({
    "dot_iu_gate_open", "dot_iu_gate_close", "dot_iu_gate_watchdog", "dot_iu_gate_verify_closed",
    "dot_iu_route_worker_run",
})


class ParamError(BadInput):
    """A missing, unknown or malformed command parameter."""


class NotGoverned(Refused):
    """A plan statement that is not a bare call of the command's own function."""


class CommandRefused(Refused):
    """A shut gate, or the function answered a refusal; nothing changed."""


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
            why = _json_problem(items)
            if why:
                raise bad(why)
        else:
            items = [i.strip() for i in s.split(",")] if s else []
        if t == "uuid[]":
            try:
                return [str(uuid.UUID(i)) for i in items]
            except ValueError:
                raise bad("a list of uuids") from None
        return items
    raise bad(f"a supported type ({t})")


# ---------------------------------------------------------------- shown SQL (literals)
def sql_string(s: str) -> str:
    """A string literal that means the same under every session setting.

    A plain '…' literal only when the text holds neither a quote nor a
    backslash (standard_conforming_strings and backslash_quote cannot change
    it then); otherwise dollar-quoting with a tag that does not occur in the
    text, which no setting reinterprets.
    """
    if "'" not in s and "\\" not in s:
        return f"'{s}'"
    n = 0
    while True:
        tag = f"$iu{n or ''}$"
        # the body must not contain the closing tag, nor end in a way that completes it
        if tag not in s and (s + tag).find(tag) == len(s):
            return f"{tag}{s}{tag}"
        n += 1


def literal(p: Param, value: Any) -> str:
    if value is None:
        return f"NULL::{p.type}"
    t = p.type
    if t == "text":
        return sql_string(value)
    if t == "uuid":
        return f"{sql_string(value)}::uuid"
    if t == "integer":
        return str(int(value))
    if t == "boolean":
        return "true" if value else "false"
    if t == "jsonb":
        return f"{sql_string(json.dumps(value, sort_keys=True, ensure_ascii=False))}::jsonb"
    if t == "uuid[]":
        return "ARRAY[" + ", ".join(f"{sql_string(v)}::uuid" for v in value) + "]::uuid[]"
    if t == "text[]":
        return "ARRAY[" + ", ".join(sql_string(v) for v in value) + "]::text[]"
    raise ValueError(t)


def _positional(cmd: Command, params: dict[str, Any]) -> list[tuple[Param, Any]]:
    """The call's arguments in the function's order; trailing omitted optionals left to their defaults."""
    args: list[tuple[Param, Any]] = []
    pending: list[tuple[Param, Any]] = []  # optional params not given, kept only if a later one is
    for p in cmd.params:
        if p.fixed is not None:
            value: Any = p.fixed
        elif p.name in params:
            value = params[p.name]
        else:
            pending.append((p, p.default))
            continue
        args += [*pending, (p, value)]
        pending = []
    return args


def render_call(cmd: Command, params: dict[str, Any]) -> str:
    """`SELECT public.fn(<literals>)`: what the dispatcher calls, for reading (and for psql)."""
    args = ", ".join(literal(p, v) for p, v in _positional(cmd, params))
    return f"SELECT public.{cmd.targets[0]}({args})"


@dataclass
class DotCommandPlan:
    command: Command
    params: dict[str, Any]
    statements: list[str]  # shown: SELECT public.fn_*(<literals>)
    args: list[Any] = field(default_factory=list)  # sent: the arguments by position, as JSON values
    executed: str = DISPATCH_SQL

    @property
    def target_functions(self) -> list[str]:
        return list(self.command.targets)


def build_plan(cmd: Command, params: dict[str, Any]) -> DotCommandPlan:
    plan = DotCommandPlan(cmd, params, [render_call(cmd, params)],
                          [v for _, v in _positional(cmd, params)])
    assert_governed(plan)
    return plan


_ALLOWED_TYPES = {"uuid", "text", "int4", "integer", "bool", "boolean", "jsonb", "int8", "bigint"}


def assert_governed(plan: DotCommandPlan) -> None:
    """The executed statement is exactly the dispatcher call with bound parameters, and every
    shown statement is exactly `SELECT public.<own target fn>(<literals>)`; or NotGoverned."""
    _assert_dispatch(plan.command.name, plan.executed)
    for sql in plan.statements:
        _assert_call(plan.command.name, plan.command.targets, sql)


# Each check is a pure function of the text and the command's own functions, so
# a text proven once stays proven: the check right before execution, and the
# dispatcher call (the same text every time), need no second parse — about
# three quarters of a governed apply's client CPU (bench row 6a). A text that
# fails is never remembered: it is parsed, and refused, every time. Bounded.
@functools.lru_cache(maxsize=4096)
def _assert_call(name: str, targets: tuple[str, ...], sql: str) -> None:
    call, refuse = _bare_call(name, sql)
    names = [n.sval for n in call.funcname or ()]
    allowed_fns = set(targets)
    if len(names) != 2 or names[0] != "public" or names[1] not in allowed_fns:
        raise refuse(f"calls {'.'.join(names)}; allowed: public.{', public.'.join(sorted(allowed_fns))}")
    for arg in call.args or ():
        _assert_literal(arg, refuse)


@functools.lru_cache(maxsize=64)
def _assert_dispatch(name: str, executed: str) -> None:
    from pglast import ast

    n = 0

    def number(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    if re.search(r"%(?!s)", executed):
        raise NotGoverned(f"{name}: executed statement has a placeholder other than %s", command=name)
    sql = re.sub(r"%s", number, executed)
    call, refuse = _bare_call(name, sql)
    names = [x.sval for x in call.funcname or ()]
    if names != ["public", "fn_dot_iu_execute"]:
        raise refuse(f"executes {'.'.join(names)}; only public.fn_dot_iu_execute is executed")
    args = list(call.args or ())
    if len(args) != 4:
        raise refuse("the dispatcher takes exactly 4 bound parameters")
    for i, arg in enumerate(args, start=1):
        node = arg
        if i == 3 and isinstance(node, ast.TypeCast):
            if [x.sval for x in (node.typeName.names if node.typeName else None) or ()] not in (
                    ["jsonb"], ["pg_catalog", "jsonb"]):
                raise refuse("parameter 3 is cast to something other than jsonb")
            node = node.arg
        if not (isinstance(node, ast.ParamRef) and node.number == i):
            raise refuse(f"argument {i} is not the bound parameter ${i}")


def _bare_call(name: str, sql: str) -> tuple[Any, Any]:
    """The one function call of a one-statement `SELECT f(…)`, and the refusal maker."""
    from pglast import ast, parse_sql
    from pglast.parser import ParseError

    def refuse(why: str) -> NotGoverned:
        return NotGoverned(f"{name}: plan statement refused ({why}): {sql[:120]!r}", command=name)

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
    if call.agg_star or call.agg_distinct or call.agg_order or call.agg_filter or call.over \
            or call.func_variadic or call.agg_within_group:
        raise refuse("aggregate/window/variadic decoration")
    return call, refuse


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
    params_digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    def raise_for_outcome(self) -> None:
        """CommandRefused (exit 3) or Failed (exit 1) for a refused or failed answer (ensure_answer)."""
        ensure_answer(self)


def gates_for(plan: DotCommandPlan) -> list[str]:
    """Gates the plan needs by the registry's rules (seed 000 §4).

    The database decides with public.dot_iu_command_gate; a test holds the two
    equal, command by command and value by value.
    """
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
    """plan / apply / verify through the governed entry point, one ledger row per call."""

    def __init__(self, conn: psycopg.Connection[Any], actor: str) -> None:
        self.conn = conn  # autocommit: each call is its own transaction, unless the caller opened one
        self.actor = actor
        self._catalog: frozenset[str] | None = None

    # -- availability ---------------------------------------------------------
    def _load(self) -> frozenset[str]:
        # The catalog changes only by migration: read it once per runtime.
        if self._catalog is None:
            row = self.conn.execute(
                "SELECT to_regprocedure(%s) IS NOT NULL, to_regclass('public.dot_iu_command_catalog') IS NOT NULL",
                (DISPATCHER,)).fetchone()
            if not row or not row[0]:
                raise BadInput(
                    f"the operator runtime needs revision {DISPATCHER_REVISION} (the governed entry point "
                    f"{DISPATCHER}); database at {self._position()}: run iucore db upgrade",
                    revision=DISPATCHER_REVISION)
            import psycopg

            try:
                self._catalog = frozenset(
                    r[0] for r in self.conn.execute("SELECT command_name FROM public.dot_iu_command_catalog"))
            except psycopg.errors.InsufficientPrivilege as exc:
                if not self.conn.autocommit:
                    self.conn.rollback()
                raise CommandRefused(
                    f"this role may not run operator commands: {_primary(exc)} — give it the operator "
                    "policy: iucore db grant --operator ROLE") from None
        return self._catalog

    def _position(self) -> str:
        import psycopg

        try:
            return ", ".join(current_heads(self.conn)) or "base"
        except psycopg.Error:  # a role that may not read iucore's bookkeeping
            if not self.conn.autocommit:
                self.conn.rollback()
            return "an unknown revision"

    def available(self, cmd: Command) -> bool:
        return cmd.name in self._load()

    def _require_available(self, cmd: Command) -> None:
        if not self.available(cmd):
            raise BadInput(f"{cmd.name} is not available: revision {cmd.revision} is not applied "
                           f"(database at {self._position()})", command=cmd.name)

    def _with_actor(self, cmd: Command, params: dict[str, Any]) -> dict[str, Any]:
        if any(p.name == "actor" for p in cmd.params) and "actor" not in params:
            return {**params, "actor": self.actor}
        return params

    # -- verbs ------------------------------------------------------------------
    def plan(self, name: str, params: dict[str, Any]) -> RunAnswer:
        return self._call(command(name), params, "plan")

    def verify(self, name: str, params: dict[str, Any]) -> RunAnswer:
        cmd = command(name)
        if cmd.mutating:
            raise BadInput(f"{cmd.name} mutates; verify runs read commands only (use apply)", command=cmd.name)
        return self._call(cmd, params, "verify")

    def apply(self, name: str, params: dict[str, Any]) -> RunAnswer:
        return self._call(command(name), params, "apply")

    # -- internals --------------------------------------------------------------
    def _call(self, cmd: Command, params: dict[str, Any], mode: str) -> RunAnswer:
        import psycopg
        from psycopg.types.json import Jsonb

        self._require_available(cmd)
        plan = build_plan(cmd, self._with_actor(cmd, params))
        assert_governed(plan)  # once more, right before execution
        t0 = time.perf_counter()
        try:
            row = self.conn.execute(plan.executed, (cmd.name, mode, Jsonb(plan.args), self.actor)).fetchone()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CommandRefused(
                f"{cmd.name} {mode} refused: {_primary(exc)} — this role may run commands only through "
                f"{DISPATCHER}: iucore db grant --operator ROLE", command=cmd.name) from None
        except psycopg.Error as exc:
            raise Failed(f"{cmd.name} {mode} failed: {_primary(exc)}", command=cmd.name,
                         sqlstate=exc.sqlstate) from None
        out: dict[str, Any] = row[0] if row and isinstance(row[0], dict) else {}
        return RunAnswer(
            command=cmd.name, mode=mode, status=str(out.get("status") or "failed"), sql=plan.statements,
            answer=out.get("answer"), closed_gates=list(out.get("closed_gates") or []),
            gate_snapshot=dict(out.get("gate_snapshot") or {}),
            run_id=str(out["run_id"]) if out.get("run_id") else None,
            duration_ms=round((time.perf_counter() - t0) * 1000, 2),
            guidance=out.get("guidance"), next_action=out.get("next_action"),
            params_digest=out.get("params_digest"))


def _primary(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    return (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]


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
         "targets": list(c.targets), "gates": gates_for(DotCommandPlan(c, {}, [])),
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
