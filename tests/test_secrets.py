"""No password is ever printed: 57 distinct URL shapes through every error path, --json and the audit.

Each shape is a way a password can sit in a connection string (percent-
encodings of @ : / ? # % and spaces, `?password=`, key=value strings with
quotes, PGPASSWORD, unicode, a very long one, one that equals a word of our
own messages …) or a way a string holding one can be malformed. Every shape
runs through the real CLI (in-process, tracebacks fail the test) against:

- a closed local TCP port and a socket directory that does not exist;
- the test server with a real password-authenticated role (pg_hba gives
  the role group below scram-sha-256 on the socket): a wrong password, a
  database that does not exist;
- and, for a selection, the right password: an upgrade, a failing
  post-check, `db history --json`, `db backup` (pg_dump gets the password
  from PGPASSWORD only), then every audit row read back.

Two checks per output: no form of the password (raw, percent-encoded,
quoted) appears in stdout, stderr or the audit; and the output is the SAME
with a structural twin of the password (same punctuation, other letters),
which catches a leaked fragment of any length and makes the shape whose
password is a word of our own messages ("connect") testable at all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from iu_core.errors import ConfigError
from iu_core.framework.backup import _libpq_env
from iu_core.pg.target import Target

from .conftest import BROKEN, ROOT, SAMPLE

GROUP = "iucore_pw_users"
USER = "iu_pw_alice"
AT_USER = "iu@corp"  # a role whose name needs %40 in a URL
OTHER_PASSWORD = "the-role-has-another-password"
COMMANDS = (("db", "current"), ("--json", "db", "upgrade"), ("--json", "db", "history"))


# ---------------------------------------------------------------- endpoints
@dataclass(frozen=True)
class Endpoint:
    """Where a URL points: how its host is written in each syntax, and the database."""

    name: str
    netloc: str  # host[:port] as it stands in a URI's authority
    kv: str  # the same as key=value pairs
    dbname: str
    user: str = USER


def tcp_closed() -> Endpoint:
    return Endpoint("closed-port", "127.0.0.1:1", "host=127.0.0.1 port=1", "iu")


def no_socket() -> Endpoint:
    d = "/nonexistent-iucore-dir/socket"
    return Endpoint("no-socket-dir", quote(d, safe=""), f"host={d}", "iu")


def on_server(socket_dir: Path, dbname: str, name: str) -> Endpoint:
    return Endpoint(name, quote(str(socket_dir), safe=""), f"host='{socket_dir}'", dbname)


# ---------------------------------------------------------------- shapes
Make = Callable[[str, Endpoint], str]


@dataclass(frozen=True)
class Shape:
    name: str
    make: Make
    pw: str
    valid: bool = True  # libpq reads `pw` as the password (checked below)
    tcp_only: bool = False  # its host cannot be the test server's socket
    user: str = USER
    env_password: bool = False  # the URL holds none: PGPASSWORD does
    word: bool = False  # the password is a word of our own messages
    extra: dict[str, str] = field(default_factory=dict)


def enc(s: str) -> str:
    return quote(s, safe="")


def kvq(s: str) -> str:
    """A key=value value, quoted by libpq's rules."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def uri(pw: str, ep: Endpoint, *, scheme: str = "postgresql", query: str = "", user: str | None = None) -> str:
    u = enc(user or ep.user)
    return f"{scheme}://{u}:{enc(pw)}@{ep.netloc}/{enc(ep.dbname)}" + (f"?{query}" if query else "")


VALID: list[Shape] = [
    Shape("plain", lambda pw, ep: uri(pw, ep), "Sup3rS3cretPlain"),
    Shape("postgres-scheme", lambda pw, ep: uri(pw, ep, scheme="postgres"), "Sch3meSecret"),
    Shape("pct-at", lambda pw, ep: uri(pw, ep), "S3cret@tail"),
    Shape("pct-colon", lambda pw, ep: uri(pw, ep), "p:a:ss"),
    Shape("raw-colon", lambda pw, ep: f"postgresql://{ep.user}:{pw}@{ep.netloc}/{ep.dbname}", "raw:col:on"),
    Shape("pct-slash", lambda pw, ep: uri(pw, ep), "sl/ash/Pw"),
    Shape("pct-question", lambda pw, ep: uri(pw, ep), "que?ry=pw"),
    Shape("pct-hash", lambda pw, ep: uri(pw, ep), "hash#frag"),
    Shape("raw-hash", lambda pw, ep: f"postgresql://{ep.user}:{pw}@{ep.netloc}/{ep.dbname}", "raw#hash"),
    Shape("pct-percent", lambda pw, ep: uri(pw, ep), "100%25real%"),
    Shape("pct-space", lambda pw, ep: uri(pw, ep), "has some spaces"),
    Shape("pct-amp-eq-plus", lambda pw, ep: uri(pw, ep), "a&b=c+d"),
    Shape("query-password", lambda pw, ep: f"postgresql://{ep.user}@{ep.netloc}/{ep.dbname}?password={enc(pw)}",
          "QueryPw&x=1"),
    Shape("query-overrides-userinfo",
          lambda pw, ep: uri(pw[::-1], ep, query=f"password={enc(pw)}"), "Overr1de:Pw"),
    Shape("query-host-socket",
          lambda pw, ep: f"postgresql://{ep.user}:{enc(pw)}@/{ep.dbname}?host={ep.netloc}", "SockQueryPw"),
    Shape("kv-plain", lambda pw, ep: f"{ep.kv} dbname={ep.dbname} user={ep.user} password={pw}", "KvPlainPw"),
    Shape("kv-quoted-space-quote",
          lambda pw, ep: f"{ep.kv} dbname={ep.dbname} user={ep.user} password={kvq(pw)}", "it's a b\\c"),
    Shape("kv-spaces-around-eq",
          lambda pw, ep: f"password = {kvq(pw)}  {ep.kv}  dbname = {ep.dbname}  user={ep.user}", "eq=in=pw"),
    Shape("kv-newline", lambda pw, ep: f"{ep.kv} dbname={ep.dbname} user={ep.user} password={kvq(pw)}",
          "line1\nline2"),
    Shape("pct-newline-tab", lambda pw, ep: uri(pw, ep), "nl\nand\ttab"),
    Shape("unicode-encoded", lambda pw, ep: uri(pw, ep), "pässwörd€密码😀"),
    Shape("unicode-raw", lambda pw, ep: f"postgresql://{ep.user}:{pw}@{ep.netloc}/{ep.dbname}", "Ünïcode€raw"),
    Shape("very-long", lambda pw, ep: uri(pw, ep), "L0ng:/@?#%" * 400),
    Shape("looks-like-a-url", lambda pw, ep: uri(pw, ep), "postgresql://x:y@z/w"),
    Shape("quotes-and-backslashes", lambda pw, ep: uri(pw, ep), "q'u\"o\\te`"),
    Shape("common-word", lambda pw, ep: uri(pw, ep), "connect", word=True),
    Shape("pgpassword-env", lambda pw, ep: f"postgresql://{ep.user}@{ep.netloc}/{ep.dbname}", "EnvOnlyPw",
          env_password=True),
    Shape("user-with-at", lambda pw, ep: uri(pw, ep, user=AT_USER), "AtUserPw", user=AT_USER),
    Shape("sslpassword-too", lambda pw, ep: uri(pw, ep, query=f"sslpassword={enc(pw)}&sslmode=disable"),
          "SslKeyPw"),
    Shape("options-and-appname",
          lambda pw, ep: uri(pw, ep, query="application_name=x%20y&options=-c%20work_mem%3D8MB"), "OptsPw"),
    Shape("surrounding-whitespace", lambda pw, ep: f"  {uri(pw, ep)}\n", "Wh1tespacePw"),
    Shape("multi-host", lambda pw, ep: f"postgresql://{ep.user}:{enc(pw)}@{no_socket().netloc},{ep.netloc}/"
          f"{ep.dbname}", "Mult1Host"),
    Shape("ipv6-host", lambda pw, ep: f"postgresql://{ep.user}:{enc(pw)}@[::1]:1/{ep.dbname}", "Ipv6Pw",
          tcp_only=True),
    Shape("hostaddr", lambda pw, ep: f"hostaddr=127.0.0.1 port=1 dbname={ep.dbname} user={ep.user} "
          f"password={kvq(pw)}", "HostaddrPw", tcp_only=True),
]

INVALID: list[Shape] = [
    Shape("bad-escape", lambda pw, ep: f"postgresql://u:{pw}@h/db", "pa%zzss", valid=False),
    Shape("truncated-escape", lambda pw, ep: f"postgresql://u:{pw}@h/db", "trunc%2", valid=False),
    Shape("escaped-nul", lambda pw, ep: f"postgresql://u:{pw}@h/db", "nul%00byte", valid=False),
    Shape("raw-space", lambda pw, ep: f"postgresql://u:{pw}@h/db", "raw space", valid=False),
    Shape("no-scheme", lambda pw, ep: f"u:{pw}@h/db", "NoSchemePw", valid=False),
    Shape("other-scheme", lambda pw, ep: f"mysql://u:{pw}@h/db", "MysqlPw", valid=False),
    Shape("sqlalchemy-scheme", lambda pw, ep: f"postgresql+psycopg://u:{pw}@h/db", "SqlaPw", valid=False),
    Shape("uppercase-scheme", lambda pw, ep: f"POSTGRESQL://u:{pw}@h/db", "UpperPw", valid=False),
    Shape("raw-at", lambda pw, ep: f"postgresql://u:{pw}@h/db", "raw@tPw", valid=False),
    Shape("raw-slash", lambda pw, ep: f"postgresql://u:{pw}@h/db", "5433/slashPw", valid=False),
    Shape("raw-question", lambda pw, ep: f"postgresql://u:{pw}@h/db", "raw?questionPw", valid=False),
    Shape("query-raw-at-no-path", lambda pw, ep: f"postgresql://h?password={pw}", "q@tPw", valid=False),
    Shape("bad-port", lambda pw, ep: f"postgresql://u:{pw}@h:54x2/db", "BadPortPw", valid=False),
    Shape("no-database", lambda pw, ep: f"postgresql://u:{pw}@h", "NoDbPw", valid=False),
    Shape("kv-unterminated", lambda pw, ep: f"host=h dbname=db password='{pw}", "Unterminated", valid=False),
    Shape("kv-unquoted-space", lambda pw, ep: f"host=h dbname=db password={pw}", "ab cdPw", valid=False),
    Shape("kv-unquoted-key-in-pw", lambda pw, ep: f"host=h dbname=db password={pw}", "ab fooPw=cd",
          valid=False),
    Shape("unknown-query-param", lambda pw, ep: f"postgresql://u@h/db?passwd={pw}", "PasswdPw", valid=False),
    Shape("query-extra-eq", lambda pw, ep: f"postgresql://u@h/db?password={pw}", "a=bPw", valid=False),
    Shape("query-raw-amp", lambda pw, ep: f"postgresql://u@h/db?password={pw}", "ab&cdPw", valid=False),
    Shape("nul-char", lambda pw, ep: f"postgresql://u:{pw}@h/db", "nul\x00Pw", valid=False),
    Shape("lone-surrogate", lambda pw, ep: f"postgresql://u:{pw}@h/db", "sur\udcffPw", valid=False),
    Shape("ipv6-unclosed", lambda pw, ep: f"postgresql://u:{pw}@[::1/db", "Ipv6OpenPw", valid=False),
]

SUCCESS = ("pct-at", "kv-quoted-space-quote", "query-password", "pgpassword-env", "very-long")
BACKUP = ("pct-at", "pgpassword-env")

_FROM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789äöüÜïé€密码😀"
_TO = "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM5678901234öüäÏéï£钥匙🙃"
_TWIN = str.maketrans(_FROM, _TO)


def twin(pw: str) -> str:
    """The same punctuation in the same places, every letter and digit another (a %XX stays)."""
    parts = re.split(r"(%[0-9A-Fa-f]{2})", pw)
    out = "".join(p if i % 2 else p.translate(_TWIN) for i, p in enumerate(parts))
    assert out != pw and len(out) == len(pw)
    return out


def forms(pw: str) -> set[str]:
    """How a password can be written out: raw, percent-encoded, quoted, escaped."""
    sp = "surrogatepass"
    return {pw, quote(pw, safe="", errors=sp), quote(pw, errors=sp), quote_plus(pw, errors=sp), kvq(pw),
            pw.encode("unicode_escape").decode(), repr(pw)[1:-1], json.dumps(pw)[1:-1]} - {""}


def assert_no_leak(text: str, shape: Shape, pw: str) -> None:
    if shape.word:
        return  # the word is in our messages; the twin comparison is the check
    secrets = {pw, pw[::-1]} if shape.name == "query-overrides-userinfo" else {pw}
    for s in secrets:
        for f in forms(s):
            assert f not in text, f"{shape.name}: the password ({f[:20]!r}…) leaked: {text[:2000]}"


# ---------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def pw_server(pg_server: Any, databases: Any) -> Path:
    """The session server with scram-sha-256 for the roles of GROUP on its socket."""
    admin = databases.admin
    for role in (GROUP,):
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    for role in (USER, AT_USER):
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(role),
                                                                          sql.Identifier(GROUP)))
    hba = Path(admin.execute("SHOW hba_file").fetchone()[0])
    line = f"local all +{GROUP} scram-sha-256\n"
    text = hba.read_text()
    if line not in text:
        hba.write_text(line + text)
        admin.execute("SELECT pg_reload_conf()")
    # The postmaster reloads on SIGHUP, asynchronously: wait until a member is asked for a password.
    for _ in range(200):
        try:
            psycopg.connect(host=str(pg_server.socket_dir), user=USER, dbname="postgres", passfile="/dev/null",
                            password="").close()
        except psycopg.OperationalError as exc:
            if "password" in str(exc):
                break
            raise
        time.sleep(0.05)
    else:
        pytest.fail("pg_hba reload never took effect")
    return Path(pg_server.socket_dir)


def set_password(databases: Any, user: str, pw: str) -> None:
    with databases.admin.transaction():
        # One SCRAM iteration instead of 4096: the same protocol, a test that does not wait on hashing.
        databases.admin.execute("SET LOCAL scram_iterations = 1")
        databases.admin.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user),
                                                                          sql.Literal(pw)))


def cli(run_cli: Any, shape: Shape, url: str, pw: str, *args: str, project: Path = SAMPLE) -> Any:
    env = {"PGPASSWORD": pw if shape.env_password else None, "PGPASSFILE": "/dev/null"}
    return run_cli(None, "--url", url, *args, project=project, env=env)


def outputs(run_cli: Any, shape: Shape, ep: Endpoint, pw: str, commands: tuple = COMMANDS) -> list[tuple]:
    out = []
    for args in commands:
        res = cli(run_cli, shape, shape.make(pw, ep), pw, *args)
        out.append((args, res.exit_code, res.stdout, res.stderr))
    return out


def check(run_cli: Any, shape: Shape, ep: Endpoint, expect: str) -> None:
    first = outputs(run_cli, shape, ep, shape.pw)
    for args, code, stdout, stderr in first:
        assert code == 2, (shape.name, ep.name, args, stdout, stderr)
        assert expect in stderr, (shape.name, ep.name, args, stderr)
        assert_no_leak(stdout + stderr, shape, shape.pw)
        if "--json" in args:
            doc = json.loads(stdout)
            assert doc["ok"] is False and doc["exit_code"] == 2
    other = twin(shape.pw)
    assert outputs(run_cli, shape, ep, other) == first, f"{shape.name}: the output depends on the password"


# ---------------------------------------------------------------- tests
def test_the_shapes_are_distinct_and_enough() -> None:
    names = [s.name for s in VALID + INVALID]
    assert len(set(names)) == len(names) >= 30
    urls = {s.make(s.pw, tcp_closed()) for s in VALID + INVALID}
    assert len(urls) == len(names)


@pytest.mark.parametrize("shape", VALID, ids=lambda s: s.name)
def test_a_valid_shape_parses_to_its_password_and_displays_without_it(shape: Shape) -> None:
    for pw in (shape.pw, twin(shape.pw)):
        text = shape.make(pw, tcp_closed())
        t = Target.parse(text)
        expected = None if shape.env_password else pw
        # libpq itself reads this password from the string: the shape is what its name says.
        assert conninfo_to_dict(text.strip()).get("password") == expected
        assert t.password == expected and t.libpq_kwargs().get("password") == expected
        for shown in (t.display, str(t), repr(t), t.without_password(), json.dumps(t.params)):
            assert_no_leak(shown, shape, pw)
        # The display is a URI libpq reads back to the same keywords; `libpq` the same with the secrets.
        assert Target.parse(t.display).params == t.params
        assert conninfo_to_dict(t.libpq) == t.libpq_kwargs() and Target.parse(t.libpq) == t
        argv_dsn, env = _libpq_env(t)
        assert_no_leak(argv_dsn, shape, pw)
        if expected is not None:
            assert env["PGPASSWORD"] == pw


@pytest.mark.parametrize("shape", INVALID, ids=lambda s: s.name)
def test_a_malformed_shape_is_exit_2_naming_the_fault_not_the_password(run_cli, shape: Shape) -> None:
    with pytest.raises(ConfigError) as exc:
        Target.parse(shape.make(shape.pw, tcp_closed()))
    assert_no_leak(exc.value.message, shape, shape.pw)
    assert "database URL" in exc.value.message
    check(run_cli, shape, tcp_closed(), exc.value.message)


@pytest.mark.parametrize("shape", VALID, ids=lambda s: s.name)
def test_unreachable_servers_say_so_without_the_password(run_cli, shape: Shape) -> None:
    for ep in (tcp_closed(), no_socket()):
        if shape.tcp_only and ep.name == "no-socket-dir":
            continue
        check(run_cli, shape, ep, "cannot connect to postgresql://")


@pytest.mark.parametrize("shape", [s for s in VALID if not s.tcp_only], ids=lambda s: s.name)
def test_wrong_password_and_missing_database_on_a_real_server(run_cli, databases, pw_server, shape: Shape) -> None:
    set_password(databases, shape.user, OTHER_PASSWORD)
    check(run_cli, shape, on_server(pw_server, "postgres", "wrong-password"), "password authentication failed")
    # Now the password is right and only the database is wrong (for the twin too).
    set_password(databases, shape.user, shape.pw)
    ep = on_server(pw_server, "iucore_no_such_db", "no-database")
    first = outputs(run_cli, shape, ep, shape.pw)
    for args, code, stdout, stderr in first:
        assert code == 2 and 'database "iucore_no_such_db" does not exist' in stderr, (shape.name, args, stderr)
        assert_no_leak(stdout + stderr, shape, shape.pw)
    set_password(databases, shape.user, twin(shape.pw))
    assert outputs(run_cli, shape, ep, twin(shape.pw)) == first


@pytest.mark.parametrize("name", SUCCESS)
def test_real_runs_and_their_audit_rows_hold_no_password(run_cli, databases, new_db, pw_server, tmp_path,
                                                         name: str) -> None:
    shape = next(s for s in VALID if s.name == name)
    set_password(databases, shape.user, shape.pw)
    seen: list[str] = []

    def run(project: Path, url: str, *args: str) -> Any:
        res = cli(run_cli, shape, url, shape.pw, *args, project=project)
        seen.append(res.stdout + res.stderr)
        return res

    for project in (SAMPLE, BROKEN):  # BROKEN: b2's post-check fails, and is audited
        db = new_db().dbname
        databases.admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(db), sql.Identifier(shape.user)))
        url = shape.make(shape.pw, on_server(pw_server, db, "right-password"))
        res = run(project, url, "db", "upgrade")  # the transcript
        assert (res.exit_code == 0) is (project is SAMPLE), res.stderr
        res = run(project, url, "--json", "db", "upgrade")  # nothing to do / b2 fails again
        assert (res.exit_code == 0) is (project is SAMPLE), res.stderr
        assert run(project, url, "db", "history").exit_code == 0
        history = run(project, url, "--json", "db", "history")
        outcomes = [(r["revision"], r["outcome"]) for r in json.loads(history.stdout)]
        assert outcomes == ([("a3", "applied"), ("a2", "applied"), ("a1", "applied")] if project is SAMPLE
                            else [("b2", "failed"), ("b2", "failed"), ("b1", "applied")])
        if project is SAMPLE and name in BACKUP:
            # pg_dump authenticates with scram: PGPASSWORD only, argv without the password
            assert run(project, url, "--json", "db", "backup", "--out", str(tmp_path)).exit_code == 0
        with psycopg.connect(host=str(pw_server), user="postgres", dbname=db) as c:
            rows = c.execute("SELECT t::text FROM iucore.migration_log t").fetchall()
        seen.extend(r[0] for r in rows)
    for text in seen:
        assert_no_leak(text, shape, shape.pw)


def test_the_real_processes_print_no_traceback_and_no_password(pw_server, databases) -> None:
    """`iucore` and plain `alembic` as processes, the password only in IUCORE_DATABASE_URL."""
    pw = "Pr0cess:Pw@/?#%"
    set_password(databases, USER, "something-else")
    url = uri(pw, on_server(pw_server, "postgres", "wrong-password"))
    env = {**os.environ, "IUCORE_DATABASE_URL": url, "PGPASSFILE": "/dev/null"}
    env.pop("PGPASSWORD", None)
    iucore = str(Path(sys.executable).with_name("iucore"))
    alembic = str(Path(sys.executable).with_name("alembic"))
    for argv, cwd in (([iucore, "--json", "db", "upgrade"], SAMPLE), ([alembic, "upgrade", "head"], SAMPLE)):
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        assert "password authentication failed" in out
        for f in forms(pw):
            assert f not in out, (argv, out)
        if argv[0] == iucore:
            assert proc.returncode == 2 and "Traceback" not in out, out


def test_every_command_that_connects_fails_the_same_way_without_the_password(run_cli, tmp_path) -> None:
    shape = next(s for s in VALID if s.name == "very-long")
    commands = [
        ("db", "upgrade"), ("db", "downgrade", "base"), ("db", "current"), ("db", "history"), ("db", "verify"),
        ("db", "preflight"), ("db", "report"), ("db", "grant", "--readonly", "someone"),
        ("db", "backup", "--out", str(tmp_path)),
        ("inventory", "--check"), ("selftest",), ("dot", "list"), ("dot", "verify", "dot_iu_gate_verify_closed"),
        ("dot", "render", "some.key"), ("gate", "status"), ("gate", "watchdog"),
        ("gate", "close", "iu_core.composer_enabled"), ("worker", "run"), ("proof", "operator-runtime"),
    ]
    for ep in (tcp_closed(), no_socket()):
        for args in commands:
            for prefix in ((), ("--json",)):
                outs = []
                for pw in (shape.pw, twin(shape.pw)):
                    res = run_cli(None, "--url", shape.make(pw, ep), *prefix, *args, project=ROOT)
                    assert res.exit_code == 2 and "cannot connect to postgresql://" in res.stderr, (args, res.output)
                    assert_no_leak(res.stdout + res.stderr, shape, pw)
                    outs.append((res.stdout, res.stderr))
                assert outs[0] == outs[1], args
