"""One connection factory, the session settings it pins, and the one settings object.

Hostile settings are set for real (ALTER ROLE/DATABASE … SET, PGOPTIONS,
the URL's `options`, a login event trigger on 17+), each first shown to take
effect on a plain libpq connection, then shown not to reach a connection
from `db.connect`, nor Alembic's (which comes from it), nor a whole
`db upgrade head` + `selftest` + `inventory --check` under all of them at once.
"""

from __future__ import annotations

import configparser
import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from iu_core.config import RunOptions, Settings
from iu_core.errors import ConfigError, UnpinnedSession
from iu_core.framework import migrate
from iu_core.pg.db import CLIENT_ENCODING, PINNED, connect, session_options
from iu_core.pg.target import Target

from .conftest import PG_MAJOR, ROOT, SAMPLE, ok

_seq = itertools.count()

# A hostile value for every pinned setting (none of them iucore's).
HOSTILE = {
    "standard_conforming_strings": "off",
    "backslash_quote": "on",
    "search_path": "evil, public",
    "DateStyle": "SQL, DMY",
    "IntervalStyle": "sql_standard",
    "TimeZone": "Asia/Tokyo",
    "check_function_bodies": "off",
    "client_min_messages": "error",
    "transform_null_equals": "on",
    "array_nulls": "off",
    "quote_all_identifiers": "on",
}
HOSTILE_ENCODING = "SJIS"


def test_every_pinned_setting_has_a_hostile_value_here() -> None:
    assert set(HOSTILE) == {p.name for p in PINNED}
    assert all(HOSTILE[p.name].replace(" ", "") != p.value for p in PINNED)


def settings_of(conn: psycopg.Connection[Any]) -> dict[str, str]:
    names = [*HOSTILE, "client_encoding"]
    return {n: conn.execute("SELECT pg_catalog.current_setting(%s)", (n,)).fetchone()[0] for n in names}


def squeeze(values: dict[str, str]) -> dict[str, str]:
    """Spaces out: PGOPTIONS and the URL's options carry the hostile values without them."""
    return {k: v.replace(" ", "") for k, v in values.items()}


def pinned() -> dict[str, str]:
    return {**{p.name: p.shown for p in PINNED}, "client_encoding": CLIENT_ENCODING}


def hostile() -> dict[str, str]:
    return {**HOSTILE, "client_encoding": HOSTILE_ENCODING}


def options_text(values: dict[str, str]) -> str:
    """-c k=v … for libpq's options (spaces dropped: every hostile value reads the same without)."""
    return " ".join(f"-c {k}={v.replace(' ', '')}" for k, v in values.items())


@pytest.fixture
def owner(databases: Any, new_db: Callable[..., Target]) -> Iterator[Callable[[str | None], Target]]:
    """owner() → a fresh database owned by a fresh non-superuser login role, as a Target for that role."""
    made: list[tuple[str, str]] = []

    def make(revision: str | None = None) -> Target:
        role = f"iu_hostile_{os.getpid()}_{next(_seq)}"
        databases.admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        db = new_db(revision).dbname
        assert db is not None
        databases.admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(db),
                                                                              sql.Identifier(role)))
        made.append((db, role))
        return Target.of(**{**databases.target(db).params, "user": role})

    yield make
    for db, role in made:
        databases.drop(db)
        databases.admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def alter(admin: psycopg.Connection[Any], scope: sql.Composable, values: dict[str, str]) -> None:
    for k, v in values.items():
        # search_path is a list of names: a quoted 'a, b' would be ONE schema called "a, b"
        value = (sql.SQL(", ").join(map(sql.Identifier, v.split(", "))) if k == "search_path"
                 else sql.Literal(v))
        admin.execute(sql.SQL("ALTER {} SET {} = {}").format(scope, sql.Identifier(k.lower()), value))


def apply_source(source: str, target: Target, admin: Any, monkeypatch: pytest.MonkeyPatch) -> Target:
    """Make every pinned setting hostile through one source; return the target to connect with."""
    role, db = sql.Identifier(target.params["user"]), sql.Identifier(target.params["dbname"])
    if source == "ALTER ROLE":
        alter(admin, sql.SQL("ROLE {}").format(role), hostile())
    elif source == "ALTER DATABASE":
        alter(admin, sql.SQL("DATABASE {}").format(db), hostile())
    elif source == "ALTER ROLE IN DATABASE":
        alter(admin, sql.SQL("ROLE {} IN DATABASE {}").format(role, db), hostile())
    elif source == "PGOPTIONS":
        monkeypatch.setenv("PGOPTIONS", options_text(HOSTILE))
        monkeypatch.setenv("PGCLIENTENCODING", HOSTILE_ENCODING)
    elif source == "URL options":
        url = target.display + f"&options={quote(options_text(HOSTILE), safe='')}&client_encoding={HOSTILE_ENCODING}"
        return Target.parse(url)
    return target


SOURCES = ("ALTER ROLE", "ALTER DATABASE", "ALTER ROLE IN DATABASE", "PGOPTIONS", "URL options")


@pytest.mark.parametrize("source", SOURCES)
def test_the_factory_pins_every_setting_over_a_hostile_source(owner, databases, monkeypatch, source: str) -> None:
    target = apply_source(source, owner(), databases.admin, monkeypatch)
    with psycopg.connect(target.libpq, autocommit=True) as raw:  # the hostile values are real
        assert squeeze(settings_of(raw)) == squeeze(hostile())
    with connect(target) as conn:
        assert settings_of(conn) == pinned()
        assert conn.info.encoding == "utf-8"


def test_the_users_own_options_still_apply_where_they_do_not_conflict(owner, monkeypatch) -> None:
    target = owner()
    monkeypatch.setenv("PGOPTIONS", "-c standard_conforming_strings=off -c work_mem=7MB")
    with connect(target) as conn:
        assert conn.execute("SELECT current_setting('work_mem'), current_setting('standard_conforming_strings')"
                            ).fetchone() == ("7MB", "on")
    # An `options` in the URL replaces PGOPTIONS (libpq's rule), and is merged the same way.
    url = Target.parse(target.display + "&options=" + quote("-c search_path=evil -c statement_timeout=4321"))
    with connect(url) as conn:
        assert conn.execute("SELECT current_setting('statement_timeout'), current_setting('work_mem'),"
                            " current_setting('search_path')").fetchone() == ("4321ms", "4MB", "pg_catalog,pg_temp")


def test_session_options_put_ours_last() -> None:
    opts = session_options("-c search_path=evil")
    assert opts.startswith("-c search_path=evil ")
    assert opts.endswith(f"-c {PINNED[-1].name}={PINNED[-1].value}")
    assert opts.index("search_path=pg_catalog,pg_temp") > opts.index("search_path=evil")


def test_alembic_runs_on_a_connection_from_the_factory(owner, databases, monkeypatch) -> None:
    target = apply_source("ALTER ROLE", owner(), databases.admin, monkeypatch)
    seen: list[dict[str, str]] = []

    def hook(conn: psycopg.Connection[Any], stmt: Any, i: int) -> None:
        seen.append({**settings_of(conn),
                     "app": conn.execute("SELECT current_setting('application_name')").fetchone()[0]})

    run = migrate.upgrade(target, "a1", project=SAMPLE, options=RunOptions(actor="pytest"), before_statement=hook)
    assert seen and all({k: v for k, v in s.items() if k != "app"} == pinned() for s in seen)
    assert {s["app"] for s in seen} == {f"iucore:{run.run_id[:8]}"}


EVIL = """
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE SEQUENCE evil.hits;
GRANT USAGE, UPDATE ON SEQUENCE evil.hits TO PUBLIC;
CREATE FUNCTION evil.hit() RETURNS bigint LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT nextval('evil.hits') $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT evil.hit(); SELECT pg_catalog.now() $$;
CREATE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT evil.hit(); SELECT pg_catalog.current_setting($1) $$;
CREATE FUNCTION evil.md5(text) RETURNS text LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT evil.hit(); SELECT pg_catalog.md5($1) $$;
CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT evil.hit(); SELECT pg_catalog.to_regclass($1) $$;
CREATE FUNCTION evil.pg_advisory_lock(bigint) RETURNS void LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT evil.hit(); SELECT pg_catalog.pg_advisory_lock($1) $$;
CREATE FUNCTION evil.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT evil.hit(); SELECT pg_catalog.unnest($1) $$;
CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT evil.hit(); SELECT pg_catalog.texteq($1, $2) $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION evil.nameeqtext(name, text) RETURNS boolean LANGUAGE sql SET search_path = pg_catalog
    AS $$ SELECT evil.hit(); SELECT pg_catalog.nameeqtext($1, $2) $$;
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.nameeqtext);
"""


def evil_hits(admin_conn: psycopg.Connection[Any]) -> bool:
    return bool(admin_conn.execute("SELECT is_called FROM evil.hits").fetchone()[0])


def test_upgrade_selftest_and_inventory_pass_under_every_hostile_setting_at_once(
        owner, databases, run_cli, monkeypatch) -> None:
    """Role, database, PGOPTIONS and URL all hostile; `evil` ahead of pg_catalog holds tripwires."""
    target = owner()
    admin = databases.admin
    role, db = sql.Identifier(target.params["user"]), sql.Identifier(target.params["dbname"])
    with psycopg.connect(databases.target(target.params["dbname"]).libpq, autocommit=True) as c:
        c.execute(EVIL)
    alter(admin, sql.SQL("ROLE {}").format(role), {**HOSTILE, "search_path": "evil, pg_catalog, public"})
    alter(admin, sql.SQL("DATABASE {}").format(db), {"client_encoding": HOSTILE_ENCODING, "DateStyle": "German",
                                                    "TimeZone": "America/St_Johns"})
    env = {"PGOPTIONS": "-c standard_conforming_strings=off -c IntervalStyle=iso_8601", "PGCLIENTENCODING": "BIG5"}
    url = target.display + "&options=" + quote("-c standard_conforming_strings=off -c backslash_quote=on", safe="")
    for args in (("db", "upgrade", "head"), ("selftest",), ("inventory", "--check"), ("db", "verify"),
                 ("gate", "status"), ("--json", "dot", "list"), ("db", "current")):
        res = run_cli(None, "--url", url, *args, project=ROOT, env=env)
        assert res.exit_code == 0, (args, res.stdout[-3000:], res.stderr)
    history = ok(run_cli(None, "--url", url, "db", "history", project=ROOT, env=env)).stdout
    assert history.count("+00:00 ") >= 8, history  # TimeZone pinned: every run's start, with its offset
    with psycopg.connect(databases.target(target.params["dbname"]).libpq, autocommit=True) as c:
        assert not evil_hits(c), "a tripwire in the hostile search_path ran"
        # ... and the tripwires are live for a session that does not pin its search_path:
        with psycopg.connect(target.libpq, autocommit=True) as raw:
            raw.execute("SELECT now(), 'a' = 'b'")
        assert evil_hits(c)


def test_a_setting_changed_after_startup_is_refused(owner, databases, run_cli) -> None:
    """A login event trigger (PostgreSQL 17+) runs after the startup options: the read-back catches it."""
    if databases.admin.info.server_version < 170000:
        pytest.skip("login event triggers exist from PostgreSQL 17")
    target = owner()
    with psycopg.connect(databases.target(target.params["dbname"]).libpq, autocommit=True) as c:
        c.execute("""
            CREATE FUNCTION public.hostile_login() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_catalog.set_config('standard_conforming_strings', 'off', false); END $$;
            CREATE EVENT TRIGGER hostile_login ON login EXECUTE FUNCTION public.hostile_login();
        """)
    with pytest.raises(UnpinnedSession) as exc:
        connect(target)
    assert exc.value.data["settings"] == {"standard_conforming_strings": "off"}
    res = run_cli(None, "--url", target.display, "db", "upgrade", "a1", project=SAMPLE)
    assert res.exit_code == 3 and "standard_conforming_strings = 'off'" in res.stderr
    with psycopg.connect(databases.target(target.params["dbname"]).libpq) as c:
        assert c.execute("SELECT to_regclass('iucore.migration_log')").fetchone() == (None,)


# ---------------------------------------------------------------- settings
def make_project(tmp_path: Path, iucore: dict[str, str], alembic: dict[str, str] | None = None) -> Path:
    """A copy of the sample project whose alembic.ini has these [iucore] (and [alembic]) keys."""
    proj = tmp_path / "proj"
    shutil.copytree(SAMPLE, proj)
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(proj / "alembic.ini")
    cp["iucore"].update(iucore)
    cp["alembic"].update(alembic or {})
    with open(proj / "alembic.ini", "w") as fh:
        cp.write(fh)
    return proj


def test_settings_precedence_is_flag_then_environment_then_ini_then_default(tmp_path: Path) -> None:
    proj = make_project(tmp_path, {"database_url": "postgresql://ini@h/inidb", "lock_timeout": "7s",
                                   "home": "relhome", "pg_major": "18"})
    ini = Settings.resolve(project=proj, environ={})
    assert (ini.database_url, ini.lock_timeout_ms, ini.home, ini.pg_major) == (
        "postgresql://ini@h/inidb", 7000, (proj / "relhome").resolve(), 18)
    assert ini.sources["database_url"] == "alembic.ini [iucore] database_url"
    assert ini.sources["actor"] == "default"
    env = {"IUCORE_DATABASE_URL": "postgresql://env@h/envdb", "IUCORE_LOCK_TIMEOUT": "8s",
           "IUCORE_HOME": str(tmp_path / "envhome"), "IUCORE_PG_MAJOR": "16", "IUCORE_ACTOR": "env-actor"}
    e = Settings.resolve(project=proj, environ=env)
    assert (e.database_url, e.lock_timeout_ms, e.home, e.pg_major, e.actor) == (
        "postgresql://env@h/envdb", 8000, (tmp_path / "envhome").resolve(), 16, "env-actor")
    f = Settings.resolve(project=proj, environ=env, url="postgresql://flag@h/flagdb", lock_timeout="9s",
                         actor="flag-actor")
    assert (f.database_url, f.lock_timeout_ms, f.actor) == ("postgresql://flag@h/flagdb", 9000, "flag-actor")
    assert f.sources["database_url"] == "flag" and f.sources["home"] == "IUCORE_HOME"
    bare = Settings.resolve(project=SAMPLE, environ={})
    assert (bare.database_url, bare.home, bare.pg_major) == (None, (Path.cwd() / ".iucore").resolve(), None)
    assert {bare.sources[k] for k in ("database_url", "home", "pg_major")} == {"default"}


@pytest.mark.parametrize(("env", "ini", "names"), [
    ({"IUCORE_LOCK_TIMEOUT": "soon"}, {}, "IUCORE_LOCK_TIMEOUT: 'soon' is not a duration"),
    ({}, {"lock_wait": "soon"}, "alembic.ini [iucore] lock_wait: 'soon' is not a duration"),
    ({"IUCORE_PG_MAJOR": "sixteen"}, {}, "IUCORE_PG_MAJOR: 'sixteen' is not a number"),
])
def test_a_bad_setting_is_named_with_where_it_came_from(tmp_path: Path, env, ini, names: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.resolve(project=make_project(tmp_path, ini), environ=env)
    assert names in exc.value.message


def test_a_url_in_sqlalchemy_url_is_refused_without_being_shown(tmp_path: Path, run_cli) -> None:
    proj = make_project(tmp_path, {}, {"sqlalchemy.url": "postgresql+psycopg://u:Ini5ecret@h/db"})
    res = run_cli(None, "db", "current", project=proj)
    assert res.exit_code == 2 and "remove sqlalchemy.url" in res.stderr
    assert "Ini5ecret" not in res.stdout + res.stderr


def test_plain_alembic_and_iucore_pick_the_same_database(tmp_path: Path, new_db, run_cli, monkeypatch) -> None:
    """[iucore] database_url when nothing else names one; IUCORE_DATABASE_URL over it, for both tools."""
    from alembic.config import main as alembic_main

    ini_db, env_db = new_db(), new_db()
    proj = make_project(tmp_path, {"database_url": ini_db.display})
    monkeypatch.delenv("IUCORE_DATABASE_URL", raising=False)
    assert run_cli(None, "db", "upgrade", "a1", project=proj).exit_code == 0
    monkeypatch.chdir(proj)
    alembic_main(argv=["-c", str(proj / "alembic.ini"), "upgrade", "a2"])
    assert migrate.current(ini_db, project=proj).current == ["a2"]
    monkeypatch.setenv("IUCORE_DATABASE_URL", env_db.display)
    alembic_main(argv=["-c", str(proj / "alembic.ini"), "upgrade", "a1"])
    assert run_cli(None, "db", "upgrade", "a2", project=proj).exit_code == 0
    assert migrate.current(env_db, project=proj).current == ["a2"]
    assert migrate.current(ini_db, project=proj).current == ["a2"]  # untouched by the second pair


def test_the_embedded_server_comes_from_the_same_settings(tmp_path: Path, run_cli, monkeypatch) -> None:
    proj = make_project(tmp_path, {"home": "relhome", "pg_major": str(PG_MAJOR)})
    monkeypatch.delenv("IUCORE_HOME", raising=False)
    monkeypatch.delenv("IUCORE_PG_MAJOR", raising=False)
    status = json.loads(ok(run_cli(None, "--json", "server", "status", project=proj)).stdout)
    assert (status["home"], status["major"]) == (str((proj / "relhome").resolve()), PG_MAJOR)
    monkeypatch.setenv("IUCORE_HOME", str(tmp_path / "envhome"))
    status = json.loads(ok(run_cli(None, "--json", "server", "status", project=proj)).stdout)
    assert status["home"] == str((tmp_path / "envhome").resolve()) and not status["running"]


@pytest.mark.parametrize("home", ["/tmp/with space", "/tmp/a&b=c#d", "/tmp/100%/x?y", "/tmp/ünï@côde"])
def test_the_embedded_url_reads_back_whatever_the_home_path(home: str) -> None:
    from iu_core.pg.server import EmbeddedServer

    server = EmbeddedServer(home=Path(home), major=PG_MAJOR)
    target = Target.parse(server.url("iucore"))
    assert target.params == {"host": str(server.socket_dir), "user": "postgres", "dbname": "iucore"}
