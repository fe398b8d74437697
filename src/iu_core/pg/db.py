"""The one connection factory: every connection iucore opens comes from `connect`.

Alembic's too (`alembic_env.engine` hands SQLAlchemy a `creator` that calls
it). Each connection pins, at startup, the session settings iucore relies on
(see PINNED and docs/security.md): libpq's `options='-c …'` is applied with
the client's priority, above `ALTER ROLE/DATABASE … SET`, so a role or
database setting cannot change how iucore's SQL is read. The user's own
`options` (in the URL, else PGOPTIONS) still apply where they do not
conflict: ours come after theirs, and the later `-c` wins. After connecting,
the pinned values are read back; a session that does not have them (a pooler
that drops startup options) is refused before any SQL of ours runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConnectionFailed, UnpinnedSession
from .target import Target

if TYPE_CHECKING:
    import psycopg

# Seconds libpq waits for a server that does not answer, unless the URL says
# `connect_timeout` or the environment PGCONNECT_TIMEOUT.
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Pin:
    name: str
    value: str  # as sent in options
    shown: str  # as current_setting() reports it
    why: str


PINNED: tuple[Pin, ...] = (
    Pin("standard_conforming_strings", "on", "on",
        "a backslash in a '…' literal is a character, not an escape, as pglast and iucore's quoting assume"),
    Pin("backslash_quote", "safe_encoding", "safe_encoding",
        "\\' never ends a literal in a client encoding where a multibyte character can hold a backslash"),
    Pin("search_path", "pg_catalog,pg_temp", "pg_catalog,pg_temp",
        "built-ins resolve to pg_catalog only: on a shared database other roles may create in public, "
        "and an exact-type look-alike there (public.cardinality(text[])) would beat the built-in and run "
        "as the migration owner; every file names IU Core's objects with their schema, so an "
        "unqualified CREATE fails instead of landing anywhere; temporary objects last "
        "(IU Core's functions pin the same path)"),
    Pin("DateStyle", "ISO,MDY", "ISO, MDY", "dates read and print the same on every server (PostgreSQL's default)"),
    Pin("IntervalStyle", "postgres", "postgres", "intervals read and print the same on every server"),
    Pin("TimeZone", "UTC", "UTC", "timestamps print in UTC with their zone; date arithmetic is the same everywhere"),
    Pin("check_function_bodies", "on", "on", "a function body that does not compile fails its revision"),
    Pin("client_min_messages", "notice", "notice", "self-test transcripts record exactly the NOTICEs"),
    Pin("transform_null_equals", "off", "off", "x = NULL stays unknown, as the guards are written"),
    Pin("array_nulls", "on", "on", "NULL in an array literal is a null"),
    Pin("quote_all_identifiers", "off", "off",
        "catalog definitions (fingerprint, inventory) render the same as when recorded"),
)
# client_encoding goes as libpq's own keyword (a startup parameter after the
# options string, so a `client_encoding` in the URL or PGCLIENTENCODING cannot
# override it): everything iucore sends and reads is UTF-8.
CLIENT_ENCODING = "UTF8"


def session_options(user_options: str | None) -> str:
    """The user's `options` (URL, else PGOPTIONS), then ours: the later -c wins."""
    ours = " ".join(f"-c {p.name}={p.value}" for p in PINNED)
    theirs = (user_options or "").strip()
    return f"{theirs} {ours}" if theirs else ours


def connect_kwargs(target: Target, app: str = "iucore") -> dict[str, str]:
    """The libpq keywords a connection to `target` is opened with (the password included)."""
    kw = target.libpq_kwargs()
    # libpq reads PGOPTIONS only when no `options` keyword is given: merge it ourselves.
    kw["options"] = session_options(kw["options"] if "options" in kw else os.environ.get("PGOPTIONS"))
    kw["client_encoding"] = CLIENT_ENCODING
    kw["application_name"] = app
    if "connect_timeout" not in kw and not os.environ.get("PGCONNECT_TIMEOUT"):
        kw["connect_timeout"] = str(CONNECT_TIMEOUT_S)
    return kw


def connect(target: Target, *, autocommit: bool = True, app: str = "iucore") -> psycopg.Connection[Any]:
    """A psycopg connection to `target` with iucore's session settings pinned and checked."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    try:
        conn = psycopg.connect(make_conninfo("", **connect_kwargs(target, app)), autocommit=True)
    except psycopg.Error as exc:
        # libpq's connection errors name the host, port, socket, user and
        # database, never the password.
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise ConnectionFailed(f"cannot connect to {target.display}: {reason}", url=target.display) from None
    try:
        check_pinned(conn)
        conn.autocommit = autocommit
    except BaseException:
        conn.close()
        raise
    return conn


# One round trip, no parameters to adapt: the names are the constants above.
_READ_BACK = "SELECT " + ", ".join(
    f"pg_catalog.current_setting('{name}')" for name in [*(p.name for p in PINNED), "client_encoding"]
)


def check_pinned(conn: psycopg.Connection[Any]) -> None:
    """Refuse a session whose pinned settings are not iucore's (UnpinnedSession, exit 3)."""
    row = conn.execute(_READ_BACK).fetchone()
    assert row is not None
    expected = [*(p.shown for p in PINNED), CLIENT_ENCODING]
    names = [*(p.name for p in PINNED), "client_encoding"]
    wrong = {n: str(a) for n, a, e in zip(names, row, expected, strict=True) if a != e}
    if wrong:
        raise UnpinnedSession(
            "the session does not have the settings iucore pins at connect ("
            + ", ".join(f"{k} = {v!r}" for k, v in sorted(wrong.items()))
            + "): a connection pooler that drops startup options, or a login trigger that changes them? "
            "Connect to the server directly; nothing was run",
            settings=wrong,
        )
