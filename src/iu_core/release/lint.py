"""Static gates over the SQL (and the no-hardcode scan over everything we ship).

Rules, each with a name a finding carries (docs/sql-conventions.md says why):
  parse              every migration/rollback/self-test file follows the conventions and parses (pglast)
  plpgsql            every PL/pgSQL function body and DO block parses (pglast's PL/pgSQL parser)
  secdef-path        every SECURITY DEFINER function (made so by CREATE or by ALTER FUNCTION) pins
                     search_path to a literal list with pg_temp present and LAST, by its latest CREATE
                     (each CREATE OR REPLACE stands alone) or a later ALTER; never FROM CURRENT, TO
                     DEFAULT or RESET; and its body never changes search_path (SET, set_config)
  secdef-schema      that list names only trusted schemas, then pg_temp: from revision TRUSTED_FROM
                     (least_privilege) on, pg_catalog alone (public is shared with Directus, whose
                     role may CREATE there); in the files of earlier revisions (history) also public
                     and cutter_governance; never "$user" or another schema
  secdef-owner       a SECURITY DEFINER function stays owned by the role running the migration: no
                     ALTER … OWNER TO another role, no REASSIGN OWNED, no SET ROLE / SESSION AUTHORIZATION
  dynamic-sql        in a SECURITY DEFINER function every EXECUTE runs text that is SQL-safe by
                     construction: literals, format() %I/%L, quote_ident/quote_literal/quote_nullable,
                     regclass/regtype/… values, integers inside format(), and variables or array elements
                     built only from those; values go through USING. Otherwise say why it is safe:
                     `-- lint: allow dynamic-sql (reason)`
  hidden-ddl         no function change, grant, owner or role change inside a PL/pgSQL body, plain or built
                     as text for EXECUTE (the other rules read only top-level statements): refused in a DO
                     block, allowed with a reason in a function body; a DO block EXECUTEs only text built
                     from constants, or says why: `-- lint: allow hidden-ddl (…)`
  revoke-public      a mutating fn_* function a revision adds has EXECUTE revoked from PUBLIC in that
                     file: that signature (types normalised, OUT arguments and defaults ignored), after
                     the CREATE (REVOKE GRANT OPTION FOR does not count), not granted back later
  grant-public       nothing is granted to PUBLIC (GRANT … TO PUBLIC, ALTER DEFAULT PRIVILEGES … TO
                     PUBLIC); a rollback restoring such a grant says why: `-- lint: allow grant-public (…)`
  framework-timeouts no file sets lock_timeout / statement_timeout: the framework sets them for every run
  no-hardcode        no password, DSN with credentials, IP address or default-port literal in SQL, Python or docs
The files are read in chain order, each judged with what the earlier ones made of every function.
An allow comment sits on the statement's line or the comment lines right above it and needs a reason.
sqlfluff runs separately (nox -s lint) with the committed .sqlfluff.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IUCoreError
from ..framework.declarations import declared_delta
from ..framework.layout import RevisionFiles, script_directory
from ..framework.selftest import load
from ..framework.sqlfiles import (
    MIGRATION_SECTIONS,
    ROLLBACK_SECTIONS,
    Expanded,
    expand,
    parse_script,
    split_statements,
)
from .datascripts import scripts as runtime_scripts

# Schemas a SECURITY DEFINER function may search before pg_temp, from revision TRUSTED_FROM on:
# the catalog only. IU Core's `public` is Directus's too, and Directus's own role may CREATE there
# (DESIGN §7a): any schema a role other than the owner can create in lets that role plant a
# better-matching overload (public.cardinality(text[]) beats pg_catalog.cardinality(anyarray))
# that runs with the owner's rights. So every IU Core object is named schema-qualified instead.
TRUSTED_SCHEMAS = ("pg_catalog",)
TRUSTED_FROM = "least_privilege"
# The files of the revisions before TRUSTED_FROM are history (DESIGN §3: applied by hand in
# production, never edited): they pinned `public, pg_temp` and are judged by the rule they were
# written under — the catalog and IU Core's own schemas. least_privilege re-pins their functions.
HISTORIC_TRUSTED_SCHEMAS = ("pg_catalog", "public", "cutter_governance")
SUPPRESSIBLE = frozenset({"dynamic-sql", "hidden-ddl", "grant-public"})


@dataclass(frozen=True)
class Finding:
    rule: str
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.rule}] {self.message}"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# ---------------------------------------------------------------- reading files
@dataclass(frozen=True)
class _Stmt:
    sql: str
    line: int  # 1-based line of the file where the statement starts
    node: Any  # the pglast statement


@dataclass(frozen=True)
class _File:
    path: Path
    lines: tuple[str, ...]  # of the expanded text (`\\ir` includes inlined)
    stmts: tuple[_Stmt, ...]
    expanded: Expanded | None = None  # maps an expanded line back to the file that wrote it

    def allowed(self, line: int, rule: str) -> bool:
        """A `-- lint: allow RULE (reason)` on `line` or on the comment lines right above it."""
        seen = [self.lines[line - 1]] if 0 < line <= len(self.lines) else []
        i = line - 2
        while 0 <= i < len(self.lines) and self.lines[i].lstrip().startswith("--"):
            seen.append(self.lines[i])
            i -= 1
        return any(m.group(1) == rule and m.group(2).strip() for text in seen for m in _ALLOW.finditer(text))

    def finding(self, rule: str, line: int, message: str, *, suppressible: bool = False) -> list[Finding]:
        """The one place a SQL rule's finding is made (`line` counts in `lines`)."""
        if suppressible and self.allowed(line, rule):
            return []
        if self.expanded is not None:
            o = self.expanded.origin(line)
            return [Finding(rule, str(o.path), o.line, message)]
        return [Finding(rule, str(self.path), line, message)]


_ALLOW = re.compile(r"--\s*lint:\s*allow\s+([a-z-]+)\s*\(([^)]*)\)")


def _read(path: Path) -> _File:
    ex = expand(path)  # lint what runs: the file with its `\\ir` includes
    return _File(path, tuple(ex.text.split("\n")), _parse_text(ex.text), ex)  # lines as _line_of counts them


@functools.lru_cache(maxsize=64)
def _parse_text(text: str) -> tuple[_Stmt, ...]:
    from pglast import parse_sql

    return tuple(_Stmt(sql, _line_of(text, off), parse_sql(sql)[0].stmt) for sql, off in split_statements(text))


# ---------------------------------------------------------------- parse rules
def check_parse(path: Path, kind: str) -> list[Finding]:
    try:
        if kind == "migration":
            parse_script(path, MIGRATION_SECTIONS)
        elif kind == "rollback":
            parse_script(path, ROLLBACK_SECTIONS)
        else:
            load(path)
    except IUCoreError as exc:
        return [Finding("parse", str(path), int(exc.data.get("line", 1) or 1), exc.message)]
    return []


def check_plpgsql(path: Path) -> list[Finding]:
    from pglast.parser import ParseError, parse_plpgsql_json

    f, out = _read(path), []
    for st in f.stmts:
        if not _is_plpgsql(st.node):
            continue
        try:
            parse_plpgsql_json(st.sql)
        except ParseError as exc:
            out += f.finding("plpgsql", st.line, f"PL/pgSQL body does not parse: {exc}")
    return out


def _defval(o: Any) -> Any:
    v = o.arg
    if _is(v, "String"):
        return v.sval
    if _is(v, "Boolean"):
        return v.boolval
    if _is(v, "Integer"):
        return v.ival
    return v


def _option(node: Any, name: str, default: Any = None) -> Any:
    opts = node.args if _is(node, "DoStmt") else node.options
    return next((_defval(o) for o in opts or () if o.defname == name), default)


def _is_plpgsql(node: Any) -> bool:
    if _is(node, "DoStmt"):
        return _option(node, "language", "plpgsql") == "plpgsql"
    return _is(node, "CreateFunctionStmt") and _option(node, "language") == "plpgsql"


def _body_line(st: _Stmt) -> int:
    """The file line PL/pgSQL counts as its line 1: where the body's opening quote is."""
    body = _option(st.node, "as")
    text = body[0].sval if isinstance(body, tuple) else body
    at = st.sql.find(text) if isinstance(text, str) and text else -1
    return st.line + st.sql.count("\n", 0, at) if at >= 0 else st.line


# ---------------------------------------------------------------- pglast helpers
def _is(node: Any, *kinds: str) -> bool:
    """`node` is a pglast node of one of these kinds (by name: attributes stay untyped for mypy)."""
    return type(node).__name__ in kinds


def _walk(node: Any) -> Iterator[Any]:
    """Every pglast node under `node`, itself included."""
    from pglast import ast

    if isinstance(node, list | tuple):
        for x in node:
            yield from _walk(x)
    elif isinstance(node, ast.Node):
        yield node
        for attr in node:
            yield from _walk(getattr(node, attr))


def _refs(node: Any) -> set[str] | None:
    """Names an expression reads (columns/variables, every part of a dotted name, and $n); None: unknown."""
    if node is None:
        return None
    out: set[str] = set()
    for n in _walk(node):
        if _is(n, "ColumnRef"):
            out |= {f.sval for f in n.fields if _is(f, "String")}
        elif _is(n, "ParamRef"):
            out.add(f"${n.number}")
    return out


def _queryless(node: Any) -> bool:
    """No subquery or relation in `node`: its value does not come from data."""
    return node is not None and not any(_is(n, "SubLink", "RangeVar", "RangeFunction", "RangeSubselect") for n in _walk(node))


def _const_str(node: Any) -> str | None:
    if _is(node, "TypeCast"):
        return _const_str(node.arg)
    if _is(node, "A_Const") and _is(node.val, "String"):
        return str(node.val.sval)
    return None


def _builtin(node: Any, *names: str) -> bool:
    """`node` is a call of pg_catalog's function of one of `names` (unqualified or pg_catalog-qualified)."""
    if not _is(node, "FuncCall"):
        return False
    parts = [p.sval for p in node.funcname]
    return parts[-1] in names and (len(parts) == 1 or parts[:-1] == ["pg_catalog"])


# ---------------------------------------------------------------- function signatures
# (schema, name, normalised input-argument types); types None: "every overload" (no argument list given)
Sig = tuple[str, str, tuple[str, ...] | None]
_ROUTINE_TYPES = frozenset({"OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE"})
_NOT_INPUT = frozenset({"FUNC_PARAM_OUT", "FUNC_PARAM_TABLE"})


def _qualified(names: Iterable[Any]) -> tuple[str, str]:
    # Unqualified names resolve in `public`: the files schema-qualify everything, and iucore pins the
    # connection's search_path, so this only decides how an unqualified REVOKE is matched.
    parts = [n.sval for n in names]
    return (parts[-2] if len(parts) > 1 else "public"), parts[-1]


def _type_key(t: Any) -> str:
    """A type as PostgreSQL identifies it: aliases resolved by the parser (int → int4, character
    varying → varchar, double precision → float8), pg_catalog./public. dropped, typmods ignored."""
    names = [n.sval for n in t.names]
    if len(names) == 2 and names[0] in ("pg_catalog", "public"):
        names = names[1:]
    return ".".join(names) + ("%type" if t.pct_type else "") + "[]" * len(t.arrayBounds or ())


def _create_sig(node: Any) -> Sig:
    schema, name = _qualified(node.funcname)
    args = tuple(_type_key(p.argType) for p in node.parameters or () if p.mode.name not in _NOT_INPUT)
    return schema, name, args


def _object_sig(obj: Any) -> Sig:
    """The routine an ObjectWithArgs (GRANT/REVOKE/ALTER/DROP) names."""
    schema, name = _qualified(obj.objname)
    if obj.args_unspecified:
        return schema, name, None
    if obj.objfuncargs:
        return schema, name, tuple(_type_key(p.argType) for p in obj.objfuncargs if p.mode.name not in _NOT_INPUT)
    return schema, name, tuple(_type_key(t) for t in obj.objargs or ())


def parse_signature(text: str) -> Sig:
    """'public.fn_x(uuid, integer)' (a revision's inventory) as a signature; a bare name: every overload."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    try:
        stmt: Any = parse_sql(f"DROP FUNCTION {text}")[0].stmt
        return _object_sig(stmt.objects[0])
    except (ParseError, AttributeError, IndexError) as exc:
        raise IUCoreError(f"not a function signature: {text!r}") from exc


def _declared(text: str) -> Sig:
    """A revision's inventory entry; a bare or unparsable one stands for every overload of its name."""
    try:
        return parse_signature(text) if "(" in text else ("public", text.split(".")[-1], None)
    except IUCoreError:
        return "public", text.split("(")[0].split(".")[-1], None


def _matches(named: Sig, sig: Sig) -> bool:
    return named[:2] == sig[:2] and (named[2] is None or named[2] == sig[2])


def _show(sig: Sig) -> str:
    return f"{sig[0]}.{sig[1]}" + ("" if sig[2] is None else f"({', '.join(sig[2])})")


# ---------------------------------------------------------------- PL/pgSQL bodies
@functools.lru_cache(maxsize=256)
def _plpgsql_tree(sql: str) -> dict[str, Any] | None:
    from pglast.parser import ParseError, parse_plpgsql_json

    try:
        tree: dict[str, Any] = json.loads(parse_plpgsql_json(sql))[0]["PLpgSQL_function"]
    except (ParseError, ValueError, LookupError):
        return None  # the plpgsql rule reports it
    return tree


@functools.lru_cache(maxsize=4096)
def _expr_ast(query: str, mode: int) -> Any:
    """A PL/pgSQL expression parsed (mode 0: a whole statement; 2: a value; 3 to 5: `target := value`)."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    try:
        if mode == 0:
            return parse_sql(query)[0].stmt
        if mode >= 3:
            m = re.match(r"[^:=]*(:=|=)", query)
            query = query[m.end():] if m else query
        select: Any = parse_sql("SELECT " + query)[0].stmt
        return select.targetList[0].val
    except (ParseError, IndexError, AttributeError):
        return None


def _expr(e: dict[str, Any]) -> Any:
    return _expr_ast(e["query"], int(e.get("parseMode", 2)))


def _plstmts(tree: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of a body, nested ones included: (kind, fields)."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k.startswith("PLpgSQL_stmt_") and isinstance(v, dict):
                yield k.removeprefix("PLpgSQL_stmt_"), v
            yield from _plstmts(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _plstmts(v)


def _own_exprs(fields: Any) -> Iterator[dict[str, Any]]:
    """The expressions of one statement, not those of the statements nested in it."""
    if isinstance(fields, dict):
        for k, v in fields.items():
            if k == "PLpgSQL_expr":
                yield v
            elif not k.startswith("PLpgSQL_stmt_"):
                yield from _own_exprs(v)
    elif isinstance(fields, list):
        for v in fields:
            yield from _own_exprs(v)


def _dynquery(kind: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The text an EXECUTE-like statement runs: EXECUTE, FOR … IN EXECUTE, RETURN QUERY EXECUTE, OPEN … FOR EXECUTE."""
    key = {"dynexecute": "query", "dynfors": "query", "return_query": "dynquery", "open": "dynquery"}.get(kind)
    q = fields.get(key) if key else None
    return q["PLpgSQL_expr"] if isinstance(q, dict) and "PLpgSQL_expr" in q else None


@dataclass(frozen=True)
class _Flow:
    """Values reach `targets` from an assignment, INTO, loop or cursor."""
    targets: frozenset[str]
    sources: frozenset[str] | None  # names read; None: cannot tell
    rhs: Any  # the value of `v := expr`, a DECLARE default, `SELECT expr INTO v`; None for every other kind
    exprs: tuple[Any, ...]  # every parsed expression of the statement


class _Body:
    """One PL/pgSQL body read for the security rules: which variables hold only SQL-safe text,
    which are built from constants, what runs as dynamic SQL."""

    def __init__(self, tree: dict[str, Any], params: Iterable[str]) -> None:
        self.tree = tree
        self.datums: list[dict[str, Any]] = tree.get("datums", [])
        self.flows = list(self._flows())
        self.types: dict[str, set[str]] = {}
        for d in self.datums:
            v = d.get("PLpgSQL_var") or {}
            if "refname" in v:
                typname = v.get("datatype", {}).get("PLpgSQL_type", {}).get("typname", "?")
                self.types.setdefault(v["refname"], set()).add(typname)
        self.ctx = self._sql_safe(set(params))
        self.const = self._constant(set(params))

    def _names(self, d: Any) -> set[str]:
        if isinstance(d, int):
            return self._names(self.datums[d]) if 0 <= d < len(self.datums) else set()
        if not isinstance(d, dict) or not d:
            return set()
        kind, body = next(iter(d.items()))
        if kind == "PLpgSQL_row":
            return {f["name"] for f in body.get("fields", [])}
        if kind == "PLpgSQL_recfield":
            return self._names(body.get("recparentno"))
        return {body["refname"]} if "refname" in body else set()

    def _flows(self) -> Iterator[_Flow]:
        def flow(targets: set[str], exprs: list[dict[str, Any]], rhs: Any = None,
                 extra: Iterable[str] = ()) -> _Flow:
            parsed = tuple(_expr(e) for e in exprs)
            refs = [_refs(p) for p in parsed]
            sources = None if any(r is None for r in refs) else frozenset(set(extra).union(*[r for r in refs if r]))
            return _Flow(frozenset(targets), sources, rhs, parsed)

        for d in self.datums:
            body = d.get("PLpgSQL_var") or {}
            for key in ("default_val", "cursor_explicit_expr"):
                if key in body:
                    e = body[key]["PLpgSQL_expr"]
                    yield flow({body["refname"]}, [e], _expr(e) if key == "default_val" else None)
        for kind, f in _plstmts(self.tree.get("action")):
            exprs = list(_own_exprs(f))
            if kind == "assign":
                yield flow(self._names(f["varno"]), exprs, _expr(exprs[0]) if exprs else None)
            elif kind == "getdiag":  # error texts can carry anything
                targets = set().union(*[self._names(i["PLpgSQL_diag_item"]["target"]) for i in f.get("diag_items", [])])
                yield _Flow(frozenset(targets), None, None, ())
            elif kind == "open":
                yield flow(self._names(f.get("curvar")), exprs)
            elif kind == "fetch":
                yield flow(self._names(f.get("target")), exprs, extra=self._names(f.get("curvar")))
            else:
                targets = self._names(f.get("target")) | self._names(f.get("var"))
                if "varno" in f:
                    targets |= self._names(f["varno"])
                if targets:
                    yield flow(targets, exprs, _select_value(exprs[0]) if kind == "execsql" and len(targets) == 1
                               else None)

    def _sql_safe(self, params: set[str]) -> _Ctx:
        """Which variables hold only SQL-safe text (or arrays of it): their declared type says so, or
        every value assigned to them is SQL-safe (greatest fixed point; parameters never are)."""
        def typed(kinds: frozenset[str]) -> frozenset[str]:
            return frozenset(n for n, ts in self.types.items() if ts <= kinds)

        arrays = frozenset(n for n, ts in self.types.items() if all(t.startswith("_") for t in ts))
        names, ints = typed(_NAME_TYPES), typed(_INT_TYPES)
        name_arrays = typed(frozenset("_" + t for t in _NAME_TYPES))
        mixed = {n for n, ts in self.types.items() if n not in arrays and any(t.startswith("_") for t in ts)}
        safe = set(self.types) - params - mixed - {"found"}
        for fl in self.flows:
            if fl.rhs is None:
                safe -= fl.targets
        while True:
            c = _Ctx(frozenset(safe - arrays) | names, frozenset(safe & arrays) | name_arrays, ints)
            bad = {t for fl in self.flows for t in fl.targets & safe
                   if not (_elements_ok if t in arrays else _splice_ok)(fl.rhs, c)}
            if not bad:
                return c
            safe -= bad

    def _constant(self, params: set[str]) -> frozenset[str]:
        """Variables whose every value is built from constants (no query, no parameter): greatest fixed point."""
        const = {n for d in self.datums for n in [d.get("PLpgSQL_var", {}).get("refname")] if n} - params - {"found"}
        changed = True
        while changed:
            changed = False
            for fl in self.flows:
                if fl.targets & const and not (fl.sources is not None and fl.sources <= const
                                               and all(_queryless(e) for e in fl.exprs)):
                    const -= fl.targets
                    changed = True
        return frozenset(const)

    def constant(self, node: Any) -> bool:
        """`node`'s value is built from constants only, so its literals are all the text it can have."""
        refs = _refs(node)
        return refs is not None and refs <= self.const and _queryless(node)

    def literals(self, node: Any, seen: frozenset[str] = frozenset()) -> list[str]:
        """Every string constant that can end up in `node`'s text, through the variables it reads."""

        out = []
        for n in _walk(node):
            if _is(n, "A_Const") and _is(n.val, "String"):
                out.append(n.val.sval)
            elif _is(n, "ColumnRef") and _is(n.fields[0], "String"):
                name = n.fields[0].sval
                if name not in seen:
                    for fl in self.flows:
                        if name in fl.targets:
                            for e in fl.exprs:
                                out += self.literals(e, seen | {name})
        return out

    def dynamic(self) -> Iterator[tuple[int, Any]]:
        """(lineno, parsed text expression) of every EXECUTE-like statement."""
        for kind, f in _plstmts(self.tree.get("action")):
            q = _dynquery(kind, f)
            if q is not None:
                yield int(f.get("lineno", 1)), _expr(q)

    def statements(self) -> Iterator[tuple[int, Any]]:
        """(lineno, parsed statement) of every plain SQL statement."""
        for kind, f in _plstmts(self.tree.get("action")):
            if kind == "execsql":
                yield int(f.get("lineno", 1)), _expr(f["sqlstmt"]["PLpgSQL_expr"])

    def calls(self) -> Iterator[tuple[int, Any]]:
        """(lineno, parsed expression) of every expression of every statement."""
        for d in self.datums:
            body = d.get("PLpgSQL_var") or {}
            if "default_val" in body:
                yield int(body.get("lineno", 1)), _expr(body["default_val"]["PLpgSQL_expr"])
        for _, f in _plstmts(self.tree.get("action")):
            for e in _own_exprs(f):
                yield int(f.get("lineno", 1)), _expr(e)


def _select_value(e: dict[str, Any]) -> Any:
    """The value `SELECT <one expression> INTO v …` assigns; None for any other statement."""
    stmt = _expr(e)
    if _is(stmt, "SelectStmt") and stmt.targetList and len(stmt.targetList) == 1 and stmt.larg is None:
        return stmt.targetList[0].val
    return None


# Types whose text is safe in SQL: reg* print a (quoted when needed) name; integers print digits and a
# sign, so they are safe only inside format() and not right after a '-' (where "--5" starts a comment).
# (regoper/regoperator are left out: an operator's name may end in '-'.)
_NAME_TYPES = frozenset({"regclass", "regcollation", "regconfig", "regdictionary", "regnamespace", "regproc",
                         "regprocedure", "regrole", "regtype"})
_INT_TYPES = frozenset({"int2", "int4", "int8", "oid"})


@dataclass(frozen=True)
class _Ctx:
    safe: frozenset[str]  # variables holding SQL-safe text (or a name type)
    safe_arrays: frozenset[str]  # arrays whose elements are
    ints: frozenset[str]  # integer variables


def _var(node: Any) -> str | None:
    return node.fields[0].sval if _is(node, "ColumnRef") and len(node.fields) == 1 and _is(
        node.fields[0], "String") else None


def _element(node: Any) -> str | None:
    """The array variable `node` subscripts with single indexes (`v[i]`), if that is what it is."""
    if _is(node, "A_Indirection") and all(_is(i, "A_Indices") and not i.is_slice for i in node.indirection):
        return _var(node.arg)
    return None


def _is_int(node: Any, c: _Ctx) -> bool:
    if _is(node, "TypeCast"):
        return not node.typeName.arrayBounds and _type_key(node.typeName) in _INT_TYPES
    return _var(node) in c.ints


def _splice_ok(node: Any, c: _Ctx) -> bool:
    """Is `node`'s text SQL-safe by construction, whatever the caller passed? Literals; quote_ident,
    quote_literal, quote_nullable; format() whose %s arguments are SQL-safe; ||, concat, string_agg
    and array_to_string of SQL-safe parts; values of a name type (regclass, regtype, …); variables
    (and array elements) that only ever hold such text. Integers only inside format()."""
    if node is None:
        return False
    if _is(node, "TypeCast"):
        if node.typeName.arrayBounds or _is_int(node, c):
            return False
        return _type_key(node.typeName) in _NAME_TYPES or _splice_ok(node.arg, c)
    if _is(node, "A_Const"):
        return True
    if _builtin(node, "quote_ident", "quote_literal", "quote_nullable"):
        return True
    if _builtin(node, "format"):
        return _format_ok(node, c)
    if _builtin(node, "concat", "string_agg"):
        return all(_splice_ok(a, c) for a in node.args or ())
    if _builtin(node, "array_to_string"):
        args = list(node.args or ())
        return len(args) >= 2 and _elements_ok(args[0], c) and all(_splice_ok(a, c) for a in args[1:])
    if _is(node, "A_Expr") and node.kind.name == "AEXPR_OP" and [n.sval for n in node.name] == ["||"]:
        return _splice_ok(node.lexpr, c) and _splice_ok(node.rexpr, c)
    if _element(node) is not None:
        return _element(node) in c.safe_arrays
    return _var(node) in c.safe


def _elements_ok(node: Any, c: _Ctx) -> bool:
    """Is every element of the array `node` SQL-safe text? (An array's own text output is not:
    it escapes with backslashes, which SQL does not read as escapes.)"""
    if _is(node, "A_Const"):
        return True
    if _is(node, "TypeCast"):
        t = node.typeName
        return (bool(t.arrayBounds) and _type_key(t).removesuffix("[]") in _NAME_TYPES) or _elements_ok(node.arg, c)
    if _is(node, "A_ArrayExpr"):
        return all(_splice_ok(e, c) for e in node.elements or ())
    if _is(node, "A_Expr") and node.kind.name == "AEXPR_OP" and [n.sval for n in node.name] == ["||"]:
        return all(_elements_ok(x, c) or _splice_ok(x, c) for x in (node.lexpr, node.rexpr))
    return _var(node) in c.safe_arrays


_FORMAT_SPEC = re.compile(r"%(?:(\d+)\$)?-?(\*(?:(\d+)\$)?|\d+)?([sIL%])")


def _format_ok(node: Any, c: _Ctx) -> bool:
    """format(): %I and %L quote their argument; every %s argument must be SQL-safe, or an integer
    right after literal text that does not end in '-' (not at the start, not next to another value). Arguments are consumed as PostgreSQL does
    (positions n$, widths * and *n$)."""
    args = list(node.args or ())
    fmt = _const_str(args[0]) if args else None
    if fmt is None:
        return False
    rest, nxt, i, text_from = args[1:], 0, 0, 0  # text_from: where the literal text before this spec starts
    while (i := fmt.find("%", i)) >= 0:
        m = _FORMAT_SPEC.match(fmt, i)
        if m is None:
            return False
        i, literal_before = m.end(), fmt[text_from:m.start()]
        if m.group(0) == "%%":
            continue  # literal text
        text_from = m.end()
        pos, width, width_pos, conv = m.group(1), m.group(2), m.group(3), m.group(4)
        if width and width.startswith("*"):
            nxt = int(width_pos) if width_pos else nxt + 1
        idx = int(pos) - 1 if pos else nxt
        nxt = idx + 1
        if conv != "s":
            continue
        if node.func_variadic or idx >= len(rest):
            return False
        arg = rest[idx]
        if _is_int(arg, c):
            if not literal_before or literal_before.endswith("-"):
                return False
        elif not _splice_ok(arg, c):
            return False
    return True


# Text that, run by EXECUTE, would change what the top-level rules read: routines, privileges, owners, roles.
_HIDDEN_TEXT = re.compile(
    r"\b(?:CREATE|ALTER|DROP)\b.*?\b(?:FUNCTION|PROCEDURE|ROUTINE)\b|\bGRANT\b|\bSECURITY\s+DEFINER\b"
    r"|\bOWNER\s+TO\b|\bDEFAULT\s+PRIVILEGES\b|\bREASSIGN\s+OWNED\b|\bSET\s+(?:LOCAL\s+|SESSION\s+)*"
    r"(?:ROLE|SESSION\s+AUTHORIZATION|search_path)\b", re.IGNORECASE | re.DOTALL)


def _hidden_node(node: Any) -> str | None:
    """What a statement inside a body does that the top-level rules would have to see, if anything."""
    if _is(node, "CreateFunctionStmt"):
        return "creates a function"
    if _is(node, "AlterFunctionStmt"):
        return "alters a function"
    if _is(node, "DropStmt") and node.removeType.name in _ROUTINE_TYPES:
        return "drops a function"
    grant = node.action if _is(node, "AlterDefaultPrivilegesStmt") else node
    if _is(grant, "GrantStmt") and grant.is_grant:
        return "grants privileges"  # a REVOKE only takes away (and revoke-public does not count it there)
    if _is(node, "AlterOwnerStmt", "ReassignOwnedStmt"):
        return "changes an owner"
    if _is(node, "VariableSetStmt") and node.name in ("role", "session_authorization"):
        return "changes the role"
    return None


def _runtime_path_change(node: Any) -> bool:
    """A statement or expression that changes search_path while the function runs."""
    for n in _walk(node):
        if _is(n, "VariableSetStmt") and n.name == "search_path":
            return True
        if _builtin(n, "set_config") and n.args:
            name = _const_str(n.args[0])
            if name is None or name.strip().lower() == "search_path":
                return True
    return False


# ---------------------------------------------------------------- SECURITY DEFINER model
@dataclass(frozen=True)
class Routine:
    """What the files read so far have made of one function. PostgreSQL's rules: CREATE OR REPLACE
    resets every property but the owner and the ACL; ALTER changes only what it names."""
    name: str
    secdef: bool | None  # None: changed by an ALTER whose CREATE is in no file the linter reads
    path: tuple[str, tuple[Any, ...]] | None = None  # (how, values) of the pinned search_path; None: not pinned
    owner: str | None = None  # a role it was given to; None: the role running the migration
    body: tuple[Finding, ...] = ()  # what its body does that matters only while it is SECURITY DEFINER
    seen: bool = True  # False: known only from an ALTER; its CREATE is in no file the linter reads


Chain = dict[Sig, Routine]


@dataclass
class _Touch:
    line: int
    created: bool = False
    secdef_set: bool = False
    path_set: bool = False
    owner_line: int | None = None


def _path_of(setstmt: Any) -> tuple[str, tuple[Any, ...]] | None:
    kind = setstmt.kind.name
    if kind in ("VAR_RESET", "VAR_RESET_ALL"):
        return None
    values = tuple(a.val.sval if _is(a, "A_Const") and _is(a.val, "String") else repr(a)
                   for a in setstmt.args or ())
    return kind, values


def _path_problems(path: tuple[str, tuple[Any, ...]] | None,
                   trusted: tuple[str, ...] = TRUSTED_SCHEMAS) -> list[tuple[str, str]]:
    pin = "SET search_path = pg_catalog, pg_temp"  # right under either rule
    if path is None:
        return [("secdef-path", "search_path is not pinned (or was RESET): the caller's search_path resolves "
                                f"every name; add {pin}")]
    how, items = path
    if how == "VAR_SET_CURRENT":
        return [("secdef-path", "SET search_path FROM CURRENT pins whatever path the migration session had, "
                                f"not a reviewed list; write {pin}")]
    if how != "VAR_SET_VALUE":
        return [("secdef-path", f"SET search_path TO DEFAULT leaves the path to the server default; write {pin}")]
    out = []
    if "pg_temp" not in items:
        out.append(("secdef-path", f"search_path {', '.join(items)} has no pg_temp, so PostgreSQL searches it "
                                   "FIRST and any login's temporary objects shadow yours; end the list with pg_temp"))
    elif items[-1] != "pg_temp":
        out.append(("secdef-path", f"pg_temp must come last in search_path (here: {', '.join(items)}): "
                                   "a temporary object named like one you use would be found first"))
    for s in items:
        if s == "$user":
            out.append(("secdef-schema", '"$user" in search_path searches a schema named after the role, which '
                                         "whoever creates it controls; name the schemas"))
        elif s not in trusted and s != "pg_temp":
            why = ("whoever can create in it can shadow the names this function resolves"
                   if s not in HISTORIC_TRUSTED_SCHEMAS else
                   f"from revision {TRUSTED_FROM} on, a SECURITY DEFINER function searches pg_catalog only: "
                   "a role other than the owner may CREATE in an IU Core schema (public is shared with "
                   "Directus, whose role does) and plant there an overload of a built-in that matches "
                   f"better and runs with the owner's rights; write {pin} and schema-qualify every IU Core "
                   "object")
            out.append(("secdef-schema", f"schema {s!r} in search_path is not trusted (trusted: "
                                         f"{', '.join(trusted)}, then pg_temp): {why}"))
    return out


def _body_findings(f: _File, st: _Stmt, name: str, params: list[str]) -> tuple[Finding, ...]:
    """dynamic-sql and runtime search_path changes in a function body."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    out: list[Finding] = []
    if _option(st.node, "language") == "sql":
        body = _option(st.node, "as")
        text = body[0].sval if isinstance(body, tuple) else None
        try:
            nodes = [s.stmt for s in parse_sql(text)] if text else [st.node.sql_body]
        except ParseError:
            return ()
        if any(_runtime_path_change(n) for n in nodes):
            out += f.finding("secdef-path", st.line, f"SECURITY DEFINER {name} changes search_path in its body: "
                                                     "the pinned path no longer holds for what follows")
        return tuple(out)
    tree = _plpgsql_tree(st.sql) if _is_plpgsql(st.node) else None
    if tree is None:
        return ()
    b, base = _Body(tree, params), _body_line(st) - 1
    for lineno, node in b.calls():
        if _runtime_path_change(node):
            out += f.finding("secdef-path", base + lineno, f"SECURITY DEFINER {name} changes search_path in its "
                                                           "body: the pinned path no longer holds for what follows")
    for lineno, node in b.dynamic():
        if not _splice_ok(node, b.ctx):
            out += f.finding(
                "dynamic-sql", base + lineno,
                f"EXECUTE in SECURITY DEFINER {name} splices text that is not SQL-safe by construction: quote "
                "names with format() %I or quote_ident, bind values with USING ($1…) or quote them with %L; a "
                "%s or || part must itself be built that way (or be a regclass/regtype/… or, in format(), an "
                "integer). If the text is safe for a reason the rule cannot see, say why in "
                "'-- lint: allow dynamic-sql (reason)' on the line above the EXECUTE", suppressible=True)
    return tuple(out)


def _input_params(node: Any) -> list[str]:
    out = []
    for i, p in enumerate(node.parameters or (), start=1):
        if p.mode.name not in _NOT_INPUT:
            out += [f"${i}"] + ([p.name] if p.name else [])
    return out


def check_secdef(path: Path, chain: Chain | None = None, *, rolled_back: bool = False,
                 trusted: tuple[str, ...] = TRUSTED_SCHEMAS) -> list[Finding]:
    """secdef-path, secdef-schema, secdef-owner and dynamic-sql over one file.

    `chain` holds what earlier files made of each function (updated in place), so that an ALTER
    FUNCTION … SECURITY DEFINER is judged with the path its CREATE pinned, and a CREATE OR REPLACE
    with only its own. `rolled_back`: a self-test (BEGIN … ROLLBACK), where SET ROLE is a way to
    test a privilege, not an owner change that lasts. `trusted`: the schemas the path may name
    before pg_temp (HISTORIC_TRUSTED_SCHEMAS for the files of revisions before TRUSTED_FROM)."""
    f, chain = _read(path), ({} if chain is None else chain)
    out: list[Finding] = []
    touched: dict[Sig, _Touch] = {}
    for st in f.stmts:
        node = st.node
        if _is(node, "CreateFunctionStmt"):
            sig = _create_sig(node)
            name = _show(sig)
            path_opt = None
            for o in node.options or ():
                if o.defname == "set" and o.arg.name == "search_path":
                    path_opt = _path_of(o.arg)
            before = chain.get(sig) if node.replace else None
            chain[sig] = Routine(name, _option(node, "security") is True, path_opt,
                                 before.owner if before else None,
                                 _body_findings(f, st, name, _input_params(node)))
            touched[sig] = _Touch(st.line, created=True)
        elif _is(node, "AlterFunctionStmt"):
            for sig in _resolve(chain, _object_sig(node.func)):
                r = chain[sig]
                t = touched.setdefault(sig, _Touch(st.line))
                t.line = st.line
                for a in node.actions or ():
                    if a.defname == "security":
                        r = dataclasses.replace(r, secdef=bool(_defval(a)))
                        t.secdef_set = True
                    elif a.defname == "set" and (a.arg.name == "search_path" or a.arg.kind.name == "VAR_RESET_ALL"):
                        r = dataclasses.replace(r, path=_path_of(a.arg))
                        t.path_set = True
                chain[sig] = r
        elif _is(node, "AlterOwnerStmt") and node.objectType.name in _ROUTINE_TYPES:
            role = node.newowner
            owner = None if role.roletype.name in ("ROLESPEC_CURRENT_USER", "ROLESPEC_CURRENT_ROLE") else (
                role.rolename or role.roletype.name.removeprefix("ROLESPEC_"))
            for sig in _resolve(chain, _object_sig(node.object)):
                chain[sig] = dataclasses.replace(chain[sig], owner=owner)
                touched.setdefault(sig, _Touch(st.line)).owner_line = st.line
        elif _is(node, "DropStmt") and node.removeType.name in _ROUTINE_TYPES:
            for obj in node.objects or ():
                for sig in [s for s in chain if _matches(_object_sig(obj), s)]:
                    del chain[sig]
                    touched.pop(sig, None)
        elif _is(node, "ReassignOwnedStmt"):
            out += f.finding("secdef-owner", st.line, "REASSIGN OWNED in a migration hands every object of those "
                                                      "roles, SECURITY DEFINER functions included, to another role")
        elif _is(node, "VariableSetStmt") and node.name in ("role", "session_authorization") and not rolled_back \
                and node.kind.name == "VAR_SET_VALUE" and _path_of(node) != ("VAR_SET_VALUE", ("none",)):
            out += f.finding("secdef-owner", st.line, f"SET {node.name.upper().replace('_', ' ')} in a file: what is "
                                                      "created after it (SECURITY DEFINER functions too) belongs to, "
                                                      "and runs as, that role instead of the migration owner")
    for sig, t in touched.items():
        r = chain[sig]
        if r.secdef is False:
            continue
        what = (f"SECURITY DEFINER {r.name}" if r.secdef else f"{r.name} (may be SECURITY DEFINER)") + (
            "" if r.seen else " (its CREATE is in no file iucore lints)")
        if t.created or t.secdef_set or t.path_set:
            for rule, msg in _path_problems(r.path, trusted):
                out += f.finding(rule, t.line, f"{what}: {msg}")
        if r.owner is not None and (t.created or t.secdef_set or t.owner_line):
            out += f.finding("secdef-owner", t.owner_line or t.line,
                             f"{what} is owned by {r.owner}, not by the role running the migration: it would run "
                             "with that role's rights; leave the owner (or OWNER TO CURRENT_USER)")
        if r.secdef and (t.created or t.secdef_set):
            out += r.body
    return sorted(out, key=lambda x: (x.file, x.line, x.rule))


def _resolve(chain: Chain, named: Sig) -> list[Sig]:
    """The functions an ALTER names; one unknown entry (secdef None: fail closed) when none is known."""
    known = [s for s in chain if _matches(named, s)]
    if not known:
        chain[named] = Routine(_show(named), None, seen=False)
        known = [named]
    return known


# ---------------------------------------------------------------- privileges
def _to_public(grantees: Any) -> bool:
    return any(r.roletype.name == "ROLESPEC_PUBLIC" for r in grantees or ())


def check_grant_public(path: Path) -> list[Finding]:
    """grant-public: GRANT … TO PUBLIC / ALTER DEFAULT PRIVILEGES … GRANT … TO PUBLIC, anywhere."""
    f, out = _read(path), []
    for st in f.stmts:
        node = st.node
        if _is(node, "GrantStmt") and node.is_grant and _to_public(node.grantees):
            what = node.objtype.name.removeprefix("OBJECT_").lower()
            out += f.finding("grant-public", st.line, f"GRANT … ON {what} … TO PUBLIC gives every login this "
                                                      "privilege: grant to a named role (iucore db grant)",
                             suppressible=True)
        elif _is(node, "AlterDefaultPrivilegesStmt") and node.action.is_grant \
                and _to_public(node.action.grantees):
            out += f.finding("grant-public", st.line, "ALTER DEFAULT PRIVILEGES … GRANT … TO PUBLIC gives every "
                                                      "login each object created later: grant to a named role",
                             suppressible=True)
    return out


def _mutating(node: Any) -> bool:
    rettype = ".".join(n.sval for n in node.returnType.names) if node.returnType else ""
    volatility = _option(node, "volatility", "volatile")
    return not (rettype.endswith("trigger") or volatility in ("stable", "immutable"))


def check_revoke(path: Path, created: Iterable[str]) -> list[Finding]:
    """revoke-public. `created`: the functions the revision declares it adds ('public.fn_x(uuid, text)'
    or a bare name); every mutating fn_* overload of those names the file creates is held to the rule.

    Order-aware, per signature: a new function lets PUBLIC execute it; a REVOKE (not of the GRANT
    OPTION only) after the CREATE takes that away; a later GRANT … TO PUBLIC or DROP + CREATE gives it back."""
    wanted = [_declared(c) for c in created]
    f = _read(path)
    public: dict[Sig, bool] = {}  # signature → PUBLIC can EXECUTE it
    where: dict[Sig, tuple[Any, int]] = {}
    notes: dict[str, list[str]] = {}  # why a REVOKE did not count, for the message
    for st in f.stmts:
        node = st.node
        if _is(node, "CreateFunctionStmt"):
            sig = _create_sig(node)
            public.setdefault(sig, True)
            where[sig] = (node, st.line)
        elif _is(node, "DropStmt") and node.removeType.name in _ROUTINE_TYPES:
            for obj in node.objects or ():
                for sig in [s for s in public if _matches(_object_sig(obj), s)]:
                    del public[sig]
        elif _is(node, "GrantStmt") and node.objtype.name in _ROUTINE_TYPES and _to_public(node.grantees):
            hits = []
            if node.targtype.name == "ACL_TARGET_ALL_IN_SCHEMA":
                hits = [s for s in public if s[0] in {o.sval for o in node.objects}]
            for obj in node.objects or () if node.targtype.name == "ACL_TARGET_OBJECT" else ():
                named = _object_sig(obj)
                found = [s for s in public if _matches(named, s)]
                hits += found
                if not found and not node.is_grant:
                    notes.setdefault(named[1], []).append(f"the REVOKE at line {st.line} names {_show(named)}, "
                                                           "which this file has not created (yet)")
            if node.is_grant:
                for sig in hits:
                    notes.setdefault(sig[1], []).append(f"line {st.line} grants it back to PUBLIC")
            elif node.grant_option:
                for sig in hits:
                    notes.setdefault(sig[1], []).append(f"line {st.line} revokes only the GRANT OPTION")
            for sig in hits if node.is_grant or not node.grant_option else ():
                public[sig] = node.is_grant
    out = []
    for sig, can in public.items():
        node, line = where[sig]
        if not can or not sig[1].startswith("fn_") or not _mutating(node):
            continue
        # by name: a replaced function keeps the earlier revision's ACL, but an overload of a name this
        # revision adds is held to the rule even when the declaration's argument types disagree (fail closed)
        if not any(w[:2] == sig[:2] for w in wanted):
            continue
        why = "; ".join(notes.get(sig[1], []))
        out += f.finding("revoke-public", line, f"{_show(sig)} is created here and may write, and PUBLIC can still "
                                                "EXECUTE it at the end of the file: REVOKE EXECUTE ON FUNCTION "
                                                f"{_show(sig)} FROM PUBLIC after the CREATE, and grant nothing back"
                                                + (f" ({why})" if why else ""))
    return out


# ---------------------------------------------------------------- hidden DDL
def check_hidden_ddl(path: Path) -> list[Finding]:
    """hidden-ddl: what the top-level rules cannot read, inside DO blocks and function bodies.

    In a DO block (migration time) function, privilege, owner and role changes are refused outright:
    they can always be written as top-level statements. In a function body (run time) a reviewer may
    accept one with `-- lint: allow hidden-ddl (reason)`."""
    f, out = _read(path), []
    for st in f.stmts:
        if not _is_plpgsql(st.node):
            continue
        tree = _plpgsql_tree(st.sql)
        if tree is None:
            continue
        is_do = _is(st.node, "DoStmt")
        b, base = _Body(tree, [] if is_do else _input_params(st.node)), _body_line(st) - 1
        if is_do:
            where, fix = "a DO block", "write it as a top-level statement of the file, where the security rules read it"
        else:
            where = f"the body of {_show(_create_sig(st.node))}"
            fix = ("the security rules cannot read it; if it must run there, say why with "
                   "'-- lint: allow hidden-ddl (reason)' on the line above")
        for lineno, node in b.statements():
            what = _hidden_node(node)
            if what:
                out += f.finding("hidden-ddl", base + lineno, f"{where} {what}: {fix}", suppressible=not is_do)
        for lineno, node in b.dynamic():
            if _HIDDEN_TEXT.search(" ".join(b.literals(node))):
                out += f.finding("hidden-ddl", base + lineno, f"{where} builds text for EXECUTE that changes "
                                                              f"functions, privileges, owners or roles: {fix}",
                                 suppressible=not is_do)
            elif is_do and not b.constant(node):
                out += f.finding("hidden-ddl", base + lineno,
                                 "a DO block EXECUTEs text built from data (a query, a catalog read), which no rule "
                                 "can read: build it from constants, or say why it must be dynamic with "
                                 "'-- lint: allow hidden-ddl (reason)' on the line above", suppressible=True)
    return out


def check_timeouts(path: Path) -> list[Finding]:
    f, out = _read(path), []
    for st in f.stmts:
        node = st.node
        if _is(node, "VariableSetStmt") and node.name in ("lock_timeout", "statement_timeout"):
            out += f.finding("framework-timeouts", st.line,
                             f"SET {node.name} in a file: iucore sets it for every run (configure it there)")
    return out


# ---------------------------------------------------------------- no-hardcode
_HARDCODE = [
    (re.compile(r"postgres(?:ql)?(?:\+\w+)?://[^\s/@'\"]+:[^\s/@'\"]+@"), "a DSN with credentials"),
    (re.compile(r"(?i)\bpassword\s*[=:]\s*['\"][^'\"\s]{2,}['\"]"), "a password literal"),
    (re.compile(r"(?i)\bPGPASSWORD\s*=\s*[^\s$'\"]"), "a password literal"),
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"), "an IP address"),
    (re.compile(":" + str(5400 + 32) + r"\b"), "the default-port literal"),
]
SCAN_SUFFIXES = {".py", ".sql", ".md", ".ini", ".toml", ".cfg", ".mako", ".txt", ".expected"}


def check_hardcode(path: Path) -> list[Finding]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        for rx, what in _HARDCODE:
            m = rx.search(line)
            if m and not _allowed(line, m.group(0)):
                out.append(Finding("no-hardcode", str(path), n, f"{what}: {m.group(0)!r}"))
    return out


def _allowed(line: str, hit: str) -> bool:
    # 0.0.0.0-style placeholders and version quads are not addresses anyone reaches
    return hit in ("0.0.0.0",) or "noqa: hardcode" in line


# ---------------------------------------------------------------- driver
def lint_project(project: Path) -> list[Finding]:
    findings: list[Finding] = []
    chain: Chain = {}
    # base first: the order the files run in, so each file sees what the earlier ones made
    revisions = list(reversed(list(script_directory(project).walk_revisions())))
    # A file is judged by the trusted-schema rule of the state it leaves: a migration or self-test
    # by its own revision's, a rollback by its down revision's (it restores history), the runtime
    # scripts by the head's. A chain without TRUSTED_FROM has no history to spare: strict throughout.
    names = [r.revision for r in revisions]
    start = names.index(TRUSTED_FROM) if TRUSTED_FROM in names else None

    def rule_at(index: int) -> tuple[str, ...]:
        return TRUSTED_SCHEMAS if start is None or index >= start else HISTORIC_TRUSTED_SCHEMAS

    for i, script_rev in enumerate(revisions):
        rev = script_rev.revision
        adds, _ = declared_delta(script_rev.module)
        after_migration: Chain = dict(chain)
        files = RevisionFiles(project, rev)
        for kind, path in (("migration", files.forward), ("rollback", files.rollback), ("selftest", files.selftest)):
            trusted = rule_at(i - 1 if kind == "rollback" else i)
            if not path.is_file():
                if kind != "selftest":
                    findings.append(Finding("parse", str(path), 1, "missing file"))
                continue
            found = check_parse(path, kind)
            findings += found
            if found:
                continue
            findings += check_plpgsql(path) + check_timeouts(path) + check_hidden_ddl(path) + check_grant_public(path)
            if kind == "migration":
                findings += check_secdef(path, chain, trusted=trusted) + check_revoke(path, adds["function"])
                after_migration = dict(chain)
            else:  # runs on the state after this revision's migration, and leaves the chain alone
                findings += check_secdef(path, dict(after_migration), rolled_back=kind == "selftest",
                                         trusted=trusted)
    # The runtime data scripts and their rollbacks (@guard, @body, @assert) run on the head state.
    for ds in runtime_scripts(project):
        for path in (ds.forward, ds.rollback):
            if not path.is_file():
                findings.append(Finding("parse", str(path), 1, "missing file (a runtime script has its rollback)"))
                continue
            found = check_parse(path, "rollback")
            findings += found or (check_plpgsql(path) + check_timeouts(path) + check_hidden_ddl(path)
                                  + check_grant_public(path)
                                  + check_secdef(path, dict(chain), rolled_back=True,
                                                 trusted=rule_at(len(revisions) - 1)))
    for path in shipped_files(project):
        findings += check_hardcode(path)
    return [Finding(f.rule, _rel(f.file, project), f.line, f.message) for f in findings]


def shipped_files(project: Path) -> list[Path]:
    """What we ship and document, not the test fixtures (which hold bad inputs on purpose)."""
    roots = ["src", "migrations", "rollbacks", "selftests", "runtime", "docs", "bench"]
    files = [p for r in roots for p in (project / r).rglob("*") if p.is_file() and p.suffix in SCAN_SUFFIXES]
    files += [project / f for f in ("README.md", "alembic.ini", "noxfile.py", "pyproject.toml")
              if (project / f).is_file()]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def _rel(file: str, project: Path) -> str:
    try:
        return str(Path(file).resolve().relative_to(project.resolve()))
    except ValueError:
        return file
