"""Where things are and how a run is tuned: project root, database URL, timeouts.

Precedence for every setting: command-line flag > environment > `[iucore]` in
alembic.ini > the built-in default below.
"""

from __future__ import annotations

import configparser
import getpass
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError

# Defaults a DBA accepts on a busy production server: a migration never
# queues behind a long transaction for more than a few seconds (and so never
# makes the whole table's traffic queue behind it), and no statement runs
# away. The advisory-lock wait is longer: the other run is ours and finishes.
DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "60s"
DEFAULT_LOCK_WAIT = "30s"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*$")


def parse_duration(value: str, what: str) -> int:
    """'5s', '250ms', '2min', '24h' or plain seconds -> milliseconds (0 = no limit)."""
    m = _DURATION.match(str(value))
    if not m:
        raise ConfigError(
            f"{what}: {value!r} is not a duration; use e.g. 5s, 250ms, 2min, 24h or 0 for no limit",
            setting=what,
        )
    number, unit = float(m.group(1)), m.group(2) or "s"
    return int(number * {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}[unit])


@dataclass(frozen=True)
class RunOptions:
    """How one migration run is tuned and who runs it."""

    lock_timeout_ms: int = parse_duration(DEFAULT_LOCK_TIMEOUT, "lock_timeout")
    statement_timeout_ms: int = parse_duration(DEFAULT_STATEMENT_TIMEOUT, "statement_timeout")
    lock_wait_ms: int = parse_duration(DEFAULT_LOCK_WAIT, "lock_wait")
    actor: str = field(default_factory=lambda: default_actor())
    rehearse: bool = False

    def with_(self, **kw: object) -> RunOptions:
        return replace(self, **kw)  # type: ignore[arg-type]


def default_actor() -> str:
    actor = os.environ.get("IUCORE_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers): still record something honest
        return f"uid:{os.getuid()}"


def options_from_ini(ini: Path | None, **overrides: str | None) -> RunOptions:
    """RunOptions from env and the `[iucore]` section, then explicit overrides."""
    values: dict[str, str] = {
        "lock_timeout": DEFAULT_LOCK_TIMEOUT,
        "statement_timeout": DEFAULT_STATEMENT_TIMEOUT,
        "lock_wait": DEFAULT_LOCK_WAIT,
    }
    if ini is not None and ini.is_file():
        cp = configparser.ConfigParser()
        cp.read(ini)
        if cp.has_section("iucore"):
            for k in values:
                if cp.has_option("iucore", k):
                    values[k] = cp.get("iucore", k)
    for k in values:
        env = os.environ.get(f"IUCORE_{k.upper()}")
        if env:
            values[k] = env
    for k, v in overrides.items():
        if v is not None:
            values[k] = v
    return RunOptions(
        lock_timeout_ms=parse_duration(values["lock_timeout"], "lock_timeout"),
        statement_timeout_ms=parse_duration(values["statement_timeout"], "statement_timeout"),
        lock_wait_ms=parse_duration(values["lock_wait"], "lock_wait"),
    )


def find_project_root(explicit: str | Path | None = None) -> Path:
    """The directory holding alembic.ini and migrations/.

    `--project` / $IUCORE_PROJECT, else the nearest ancestor of the working
    directory that has them, else the checkout this package was installed from.
    """
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("IUCORE_PROJECT"):
        candidates.append(Path(os.environ["IUCORE_PROJECT"]))
    else:
        cwd = Path.cwd()
        candidates.extend([cwd, *cwd.parents])
        candidates.append(Path(__file__).resolve().parents[2])
    for c in candidates:
        if (c / "alembic.ini").is_file() and (c / "migrations" / "env.py").is_file():
            return c.resolve()
    if explicit or os.environ.get("IUCORE_PROJECT"):
        raise ConfigError(
            f"{candidates[0]} is not an iucore project (no alembic.ini + migrations/env.py)"
        )
    raise ConfigError(
        "no iucore project found: run from the repository (where alembic.ini is) "
        "or pass --project DIR"
    )


@dataclass(frozen=True)
class Target:
    """A database to talk to, with the password kept out of every printout."""

    url: str  # sqlalchemy form, postgresql+psycopg://…
    embedded: bool

    @property
    def display(self) -> str:
        from urllib.parse import unquote

        return redact_url(unquote(self.libpq))

    @property
    def libpq(self) -> str:
        """The URL in the form libpq/psycopg/psql take."""
        return self.url.replace("postgresql+psycopg://", "postgresql://", 1)

    @property
    def password(self) -> str | None:
        return split_password(self.url)[1]

    def without_password(self) -> str:
        """The libpq URL with no password in it (argv is visible in ps)."""
        return split_password(self.libpq)[0]


_SCHEMES = ("postgresql", "postgres")


def normalise_url(raw: str) -> str:
    """Check a user-supplied URL and return its sqlalchemy+psycopg form.

    Standard library only: `iucore db current` must not pay for importing
    SQLAlchemy to read one row.
    """
    from urllib.parse import urlsplit

    text = raw.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ConfigError(
            f"malformed database URL {redact_url(raw)!r} ({exc}): expected "
            "postgresql://USER@HOST[:PORT]/DBNAME (password from ~/.pgpass or PGPASSWORD)"
        ) from None
    scheme = parts.scheme.split("+", 1)[0]
    if not parts.scheme or "://" not in text:
        raise ConfigError(
            f"malformed database URL {redact_url(raw)!r}: expected "
            "postgresql://USER@HOST[:PORT]/DBNAME (password from ~/.pgpass or PGPASSWORD)"
        )
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"unsupported database URL scheme {parts.scheme!r}: iucore speaks PostgreSQL (postgresql://…)"
        )
    if not parts.path.strip("/"):
        raise ConfigError(f"database URL {redact_url(raw)!r} names no database")
    del port
    return "postgresql+psycopg://" + text.split("://", 1)[1]


def split_password(url: str) -> tuple[str, str | None]:
    """(url without its password, the password or None)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{user}@{host}"
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


_PW_IN_URL = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")


def redact_url(text: str) -> str:
    """Replace any password inside URL-looking text with ***."""
    text = _PW_IN_URL.sub(r"\1***\3", text)
    return re.sub(r"(password=)([^&\s]+)", r"\1***", text)


def resolve_target(url: str | None) -> Target:
    """--url, else $IUCORE_DATABASE_URL, else the embedded server (started on demand)."""
    raw = url or os.environ.get("IUCORE_DATABASE_URL")
    if raw:
        return Target(url=normalise_url(raw), embedded=False)
    from .server import EmbeddedServer

    server = EmbeddedServer.from_env()
    return Target(url=normalise_url(server.ensure_running()), embedded=True)
