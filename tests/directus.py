"""Test helpers for the real target (DESIGN §7a): a Directus-like neighbour built
for real, the chain applied by hand with psql, and a project copy that holds
an acknowledged.toml.

The neighbour is a realistic handful of Directus system tables (roles, users,
collections, fields, activity, revisions) with their serial sequences,
indexes and foreign keys, a trigger and its trigger function, a view, a
function, an enum type, an application collection, a free-standing sequence,
and another schema (`analytics`) with a table, a view and an IU-looking
function of its own. None of it is IU Core's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg

from iu_core.framework.fingerprint import snapshot
from iu_core.framework.scope import Scope
from iu_core.pg.server import bin_dir
from iu_core.pg.target import Target

from .conftest import PG_MAJOR, ROOT

DIRECTUS_SQL = [
    """CREATE TABLE public.directus_roles (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name varchar(100) NOT NULL,
        icon varchar(64) NOT NULL DEFAULT 'supervised_user_circle',
        description text)""",
    """CREATE TABLE public.directus_users (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        first_name varchar(50), last_name varchar(50),
        email varchar(128) UNIQUE, password varchar(255),
        role uuid REFERENCES public.directus_roles (id) ON DELETE SET NULL,
        status varchar(16) NOT NULL DEFAULT 'active',
        last_access timestamptz)""",
    """CREATE TABLE public.directus_collections (
        collection varchar(64) PRIMARY KEY, icon varchar(30), note text,
        hidden boolean NOT NULL DEFAULT false, singleton boolean NOT NULL DEFAULT false)""",
    """CREATE TABLE public.directus_fields (
        id serial PRIMARY KEY,
        collection varchar(64) NOT NULL REFERENCES public.directus_collections (collection) ON DELETE CASCADE,
        field varchar(64) NOT NULL, special varchar(64), interface varchar(64), options json, sort integer)""",
    """CREATE TABLE public.directus_activity (
        id serial PRIMARY KEY, action varchar(45) NOT NULL, "user" uuid,
        "timestamp" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, ip varchar(50),
        collection varchar(64) NOT NULL, item varchar(255) NOT NULL, comment text)""",
    'CREATE INDEX directus_activity_timestamp_index ON public.directus_activity ("timestamp")',
    """CREATE TABLE public.directus_revisions (
        id serial PRIMARY KEY,
        activity integer NOT NULL REFERENCES public.directus_activity (id) ON DELETE CASCADE,
        collection varchar(64) NOT NULL, item varchar(255) NOT NULL, data json, delta json,
        parent integer REFERENCES public.directus_revisions (id))""",
    "CREATE SEQUENCE public.directus_export_seq",
    """CREATE FUNCTION public.directus_touch_last_access() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN NEW.last_access := now(); RETURN NEW; END $$""",
    """CREATE TRIGGER directus_users_touch BEFORE UPDATE ON public.directus_users
       FOR EACH ROW EXECUTE FUNCTION public.directus_touch_last_access()""",
    """CREATE VIEW public.directus_active_users AS
       SELECT id, email FROM public.directus_users WHERE status = 'active'""",
    """CREATE FUNCTION public.directus_user_count() RETURNS bigint LANGUAGE sql STABLE
       AS 'SELECT count(*) FROM public.directus_users'""",
    "CREATE TYPE public.directus_item_status AS ENUM ('draft', 'published', 'archived')",
    """CREATE TABLE public.articles (
        id serial PRIMARY KEY, title text NOT NULL,
        status public.directus_item_status NOT NULL DEFAULT 'draft')""",
    "CREATE SCHEMA analytics",
    "CREATE TABLE analytics.page_views (id bigserial PRIMARY KEY, path text NOT NULL, seen_at timestamptz DEFAULT now())",
    "CREATE VIEW analytics.daily AS SELECT date_trunc('day', seen_at) AS day, count(*) FROM analytics.page_views GROUP BY 1",
    # IU-looking, but in a schema that is not IU Core's: still not ours.
    "CREATE FUNCTION analytics.fn_iu_lookalike() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
    # Some content, as a live Directus has.
    "INSERT INTO public.directus_roles (name) VALUES ('Administrator'), ('Editor')",
    """INSERT INTO public.directus_users (email, role)
       SELECT 'admin@example.invalid', id FROM public.directus_roles WHERE name = 'Administrator'""",
    "INSERT INTO public.directus_collections (collection) VALUES ('articles')",
    "INSERT INTO public.directus_fields (collection, field, interface) VALUES ('articles', 'title', 'input')",
    "INSERT INTO public.directus_activity (action, collection, item) VALUES ('create', 'articles', '1')",
    "INSERT INTO public.directus_revisions (activity, collection, item, data) VALUES (1, 'articles', '1', '{}')",
    "INSERT INTO public.articles (title) VALUES ('Hello')",
    "INSERT INTO analytics.page_views (path) VALUES ('/'), ('/about')",
]
SCHEMAS = ("public", "cutter_governance", "analytics")


def build(target: Target) -> None:
    with psycopg.connect(target.libpq, autocommit=True) as c:
        for stmt in DIRECTUS_SQL:
            c.execute(stmt)


def foreign(target: Target, project: Path = ROOT) -> dict[str, dict[str, str]]:
    """Every object of the schemas that is NOT IU Core's, with its definition and row counts."""
    with psycopg.connect(target.libpq, autocommit=True) as c:
        everything = snapshot(c, with_counts=True, scope=Scope.everything(SCHEMAS))
        mine = snapshot(c, with_counts=True, project=project)
    out: dict[str, dict[str, str]] = {}
    for kind, objs in everything.items():
        if kind in ("schema", "rows", "alembic_version"):
            continue
        rest = {n: d for n, d in objs.items() if n not in mine.get(kind, {})}
        if rest:
            out[kind] = rest
    return out


def psql(target: Target, path: Path) -> subprocess.CompletedProcess[str]:
    """What a DBA runs by hand (seeds 002 to 004): one file, one transaction, stop on error."""
    return subprocess.run(
        [str(bin_dir(PG_MAJOR) / "psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(path),
         target.libpq],
        capture_output=True, text=True, check=False)


def apply_by_hand(target: Target, revisions: list[str], project: Path = ROOT) -> None:
    for rev in revisions:
        done = psql(target, project / "migrations" / "sql" / f"{rev}.sql")
        assert done.returncode == 0, f"{rev}: {done.stderr}"


GATEWAY_GUARD = ("CREATE FUNCTION public.fn_iu_gateway_write_guard() RETURNS trigger LANGUAGE plpgsql "
                 "AS $$ BEGIN RETURN NEW; END $$")
GATEWAY_ACK = """
[[extra]]
class = "function"
name = "public.fn_iu_gateway_write_guard()"
reason = "pre-existing gateway write guard from an earlier macro (seed 002 A4)"
by = "dba on call"
"""


def audit_rows(target: Target) -> list[dict[str, Any]]:
    with psycopg.connect(target.libpq, autocommit=True) as c:
        if c.execute("SELECT to_regclass('iucore.migration_log')").fetchone() == (None,):
            return []
        cur = c.execute("SELECT revision, direction, mode, outcome, actor, message, checksums, evidence"
                        " FROM iucore.migration_log ORDER BY log_id")
        cols = [d.name for d in cur.description or []]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
