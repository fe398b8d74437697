"""Static gates over the SQL (and the no-hardcode scan over everything we ship).

Rules, each with a name a finding carries:
  parse             every migration/rollback/self-test file follows the conventions and parses (pglast)
  plpgsql           every PL/pgSQL function body and DO block parses (pglast's PL/pgSQL parser)
  secdef-path       every SECURITY DEFINER function sets search_path ending in pg_temp
  revoke-public     a mutating fn_* function a revision creates has EXECUTE revoked from PUBLIC in that file
  framework-timeouts no file sets lock_timeout / statement_timeout: the framework sets them for every run
  no-hardcode       no password, DSN with credentials, IP address or default-port literal in SQL, Python or docs
sqlfluff runs separately (nox -s lint) with the committed .sqlfluff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import IUCoreError
from .sqlfiles import MIGRATION_SECTIONS, ROLLBACK_SECTIONS, parse_script


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


def _statements(path: Path) -> list[tuple[str, int]]:
    """(statement, line) of any SQL file, with the real parser's split (`\\ir` includes expanded)."""
    from .sqlfiles import expand, split_statements

    ex = expand(path)
    return [(sql, ex.origin(_line_of(ex.text, off)).line) for sql, off in split_statements(ex.text)]


# ---------------------------------------------------------------- SQL rules
def check_parse(path: Path, kind: str) -> list[Finding]:
    from .selftest import load

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
    from pglast import ast, parse_sql
    from pglast.parser import ParseError, parse_plpgsql_json

    out = []
    for sql, line in _statements(path):
        node = parse_sql(sql)[0].stmt
        is_plpgsql = isinstance(node, ast.DoStmt) or (
            isinstance(node, ast.CreateFunctionStmt)
            and any(o.defname == "language" and _defval(o) == "plpgsql" for o in node.options or ()))
        if not is_plpgsql:
            continue
        try:
            parse_plpgsql_json(sql)
        except ParseError as exc:
            out.append(Finding("plpgsql", str(path), line, f"PL/pgSQL body does not parse: {exc}"))
    return out


def _defval(o: Any) -> Any:
    from pglast import ast

    v = o.arg
    if isinstance(v, ast.String):
        return v.sval
    if isinstance(v, ast.Boolean):
        return v.boolval
    if isinstance(v, ast.Integer):
        return v.ival
    return v


def _functions(path: Path) -> list[tuple[Any, str, int]]:
    from pglast import ast, parse_sql

    out = []
    for sql, line in _statements(path):
        node = parse_sql(sql)[0].stmt
        if isinstance(node, ast.CreateFunctionStmt):
            out.append((node, ".".join(n.sval for n in node.funcname or ()), line))
    return out


def check_secdef(path: Path) -> list[Finding]:
    from pglast import ast

    out = []
    for node, name, line in _functions(path):
        opts = node.options or ()
        if not any(o.defname == "security" and _defval(o) is True for o in opts):
            continue
        path_ok = False
        for o in opts:
            if o.defname == "set" and isinstance(o.arg, ast.VariableSetStmt) and o.arg.name == "search_path":
                items = [a.val.sval for a in o.arg.args or () if isinstance(a, ast.A_Const) and
                         isinstance(a.val, ast.String)]
                path_ok = bool(items) and items[-1] == "pg_temp"
        if not path_ok:
            out.append(Finding("secdef-path", str(path), line,
                               f"SECURITY DEFINER {name} must SET search_path = …, pg_temp"))
    return out


def check_revoke(path: Path, created: set[str]) -> list[Finding]:
    """`created`: bare names of the functions the revision declares it adds."""
    from pglast import ast, parse_sql

    revoked: set[str] = set()
    for sql, _ in _statements(path):
        node = parse_sql(sql)[0].stmt
        if (isinstance(node, ast.GrantStmt) and not node.is_grant and node.objtype is not None
                and node.objtype.name == "OBJECT_FUNCTION"
                and any(r.roletype.name == "ROLESPEC_PUBLIC" for r in node.grantees or ())):
            for obj in node.objects or ():
                revoked.add(obj.objname[-1].sval)
    out = []
    for node, name, line in _functions(path):
        bare = name.split(".")[-1]
        if bare not in created or not bare.startswith("fn_"):
            continue
        rettype = ".".join(n.sval for n in node.returnType.names) if node.returnType else ""
        volatility = next((_defval(o) for o in node.options or () if o.defname == "volatility"), "volatile")
        if rettype.endswith("trigger") or volatility in ("stable", "immutable"):
            continue  # read-only or trigger-only: nothing to guard
        if bare not in revoked:
            out.append(Finding("revoke-public", str(path), line,
                               f"{name} is created here and may write: REVOKE EXECUTE … FROM PUBLIC in this file"))
    return out


def check_timeouts(path: Path) -> list[Finding]:
    from pglast import ast, parse_sql

    out = []
    for sql, line in _statements(path):
        node = parse_sql(sql)[0].stmt
        if isinstance(node, ast.VariableSetStmt) and node.name in ("lock_timeout", "statement_timeout"):
            out.append(Finding("framework-timeouts", str(path), line,
                               f"SET {node.name} in a file: iucore sets it for every run (configure it there)"))
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
    from .inventory import declared_delta
    from .migrate import script_directory

    findings: list[Finding] = []
    script = script_directory(project)
    created: dict[str, set[str]] = {}
    for script_rev in script.walk_revisions():
        adds, _ = declared_delta(script_rev.module)
        created[script_rev.revision] = {f.split("(")[0].split(".")[-1] for f in adds["function"]}
    for rev, fns in sorted(created.items()):
        for kind, path in (("migration", project / "migrations" / "sql" / f"{rev}.sql"),
                           ("rollback", project / "rollbacks" / f"{rev}.sql"),
                           ("selftest", project / "selftests" / f"{rev}.sql")):
            if not path.is_file():
                if kind != "selftest":
                    findings.append(Finding("parse", str(path), 1, "missing file"))
                continue
            found = check_parse(path, kind)
            findings += found
            if found:
                continue
            findings += check_plpgsql(path) + check_secdef(path) + check_timeouts(path)
            if kind == "migration":
                findings += check_revoke(path, fns)
    for path in shipped_files(project):
        findings += check_hardcode(path)
    return [Finding(f.rule, _rel(f.file, project), f.line, f.message) for f in findings]


def shipped_files(project: Path) -> list[Path]:
    """What we ship and document, not the test fixtures (which hold bad inputs on purpose)."""
    roots = ["src", "migrations", "rollbacks", "selftests", "docs", "bench"]
    files = [p for r in roots for p in (project / r).rglob("*") if p.is_file() and p.suffix in SCAN_SUFFIXES]
    files += [project / f for f in ("README.md", "alembic.ini", "noxfile.py", "pyproject.toml")
              if (project / f).is_file()]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def _rel(file: str, project: Path) -> str:
    try:
        return str(Path(file).resolve().relative_to(project.resolve()))
    except ValueError:
        return file
