"""Every setting iucore reads, resolved in one place: `Settings.resolve`.

Precedence, the same for `iucore` and for plain `alembic`:

    flag (`--url`, `--actor`, `--project`, `--lock-timeout`, `--lock-retries` …; `-x url=…` for alembic)
    > environment (`IUCORE_DATABASE_URL`, `IUCORE_HOME`, `IUCORE_PG_MAJOR`, `IUCORE_ACTOR`,
      `IUCORE_PROJECT`, `IUCORE_LOCK_TIMEOUT`, `IUCORE_STATEMENT_TIMEOUT`, `IUCORE_LOCK_WAIT`,
      `IUCORE_LOCK_RETRIES`, `IUCORE_RETRY_BUDGET`)
    > the `[iucore]` section of alembic.ini (`database_url`, `home`, `pg_major`,
      `lock_timeout`, `statement_timeout`, `lock_wait`, `lock_retries`, `retry_budget`)
    > the built-in default (the embedded server, `./.iucore`, the newest-supported
      wheel, the OS user, the timeouts below).

Every other module asks `Settings` (the CLI through `Ctx.settings()`, plain
alembic through `alembic_env`); none reads `IUCORE_*` itself: the CLI hands
its flags over as flags, and `Settings` alone looks at the environment.
"""

from __future__ import annotations

import configparser
import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "DEFAULT_LOCK_RETRIES", "DEFAULT_LOCK_TIMEOUT", "DEFAULT_LOCK_WAIT", "DEFAULT_RETRY_BUDGET",
    "DEFAULT_STATEMENT_TIMEOUT", "RunOptions", "Settings", "check_actor", "default_actor",
    "find_project_root", "options_from_ini", "parse_count", "parse_duration",
]

# Defaults a DBA accepts on a busy production server (README, Timeouts).
# A lock request of the migration waits at most 200 ms: while it waits, every
# later writer of the table queues behind it, so this is what production can
# be made to wait, per try. A lock timeout rolls the revision back and retries
# it whole (iu_core.framework.lockretry), with growing, jittered sleeps in between,
# until the budget or the number of retries is spent. No statement runs away.
# The advisory-lock wait is longer: the other run is ours and finishes.
DEFAULT_LOCK_TIMEOUT = "200ms"
DEFAULT_STATEMENT_TIMEOUT = "60s"
DEFAULT_LOCK_WAIT = "30s"
DEFAULT_LOCK_RETRIES = "40"
DEFAULT_RETRY_BUDGET = "3min"

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


def parse_count(value: str, what: str) -> int:
    """A whole number of retries, 0 or more (0: a lock timeout is not retried)."""
    text = str(value).strip()
    if not text.isdigit() or len(text) > 6:
        raise ConfigError(f"{what}: {value!r} is not a number of retries; use 0 (no retry) up to 999999",
                          setting=what)
    return int(text)


@dataclass(frozen=True)
class RunOptions:
    """How one migration run is tuned and who runs it."""

    lock_timeout_ms: int = parse_duration(DEFAULT_LOCK_TIMEOUT, "lock_timeout")
    statement_timeout_ms: int = parse_duration(DEFAULT_STATEMENT_TIMEOUT, "statement_timeout")
    lock_wait_ms: int = parse_duration(DEFAULT_LOCK_WAIT, "lock_wait")
    # A lock timeout rolls the unit (revision, rehearsal, data script, self-test)
    # back and retries it whole, at most lock_retries times within retry_budget.
    lock_retries: int = parse_count(DEFAULT_LOCK_RETRIES, "lock_retries")
    retry_budget_ms: int = parse_duration(DEFAULT_RETRY_BUDGET, "retry_budget")
    actor: str = field(default_factory=lambda: default_actor())
    rehearse: bool = False

    def with_(self, **kw: object) -> RunOptions:
        return replace(self, **kw)  # type: ignore[arg-type]


# An actor is recorded in every audit and ledger row and shown in reports: a name, not a document.
ACTOR_MAX_CHARS = 128


def check_actor(value: str, source: str) -> str:
    """`value` if it can name who runs this: UTF-8 text, printable (no NUL, newline or other control
    or formatting character), not blank, at most ACTOR_MAX_CHARS characters; else ConfigError (exit 2,
    before anything connects). `source` says where it came from (--actor, IUCORE_ACTOR, …). The
    message shows a bad character by its code point, never the raw value."""
    what = f"{source}: the actor"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # argv and the environment arrive as bytes; Python hands over what is not UTF-8 as lone
        # surrogates, which neither the database nor the audit can hold
        raise ConfigError(f"{what} is not valid UTF-8 text; name who runs this in UTF-8 "
                          "(e.g. --actor alice)", setting="actor") from None
    if not value.strip():
        raise ConfigError(f"{what} is blank; name who runs this (e.g. --actor alice)", setting="actor")
    bad = next((ch for ch in value if not ch.isprintable()), None)
    if bad is not None:
        raise ConfigError(f"{what} holds a non-printing character (U+{ord(bad):04X}); use printable text",
                          setting="actor")
    if len(value) > ACTOR_MAX_CHARS:
        raise ConfigError(f"{what} is {len(value)} characters long; at most {ACTOR_MAX_CHARS}",
                          setting="actor")
    return value


def default_actor() -> str:
    """$IUCORE_ACTOR, else the OS user (checked like every actor: check_actor)."""
    if os.environ.get("IUCORE_ACTOR"):
        return check_actor(os.environ["IUCORE_ACTOR"], "IUCORE_ACTOR")
    return check_actor(_os_user(), "the OS user name (the default actor; pass --actor NAME)")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers): still record something honest
        return f"uid:{os.getuid()}"


def options_from_ini(ini: Path | None, *, lock_timeout: str | None = None, statement_timeout: str | None = None,
                     lock_wait: str | None = None, lock_retries: str | None = None,
                     retry_budget: str | None = None) -> RunOptions:
    """RunOptions from `Settings.resolve` with this alembic.ini and these flags."""
    return Settings.resolve(ini=ini, use_project=False, lock_timeout=lock_timeout,
                            statement_timeout=statement_timeout, lock_wait=lock_wait,
                            lock_retries=lock_retries, retry_budget=retry_budget).run_options()


_ENV = {
    "database_url": "IUCORE_DATABASE_URL",
    "home": "IUCORE_HOME",
    "pg_major": "IUCORE_PG_MAJOR",
    "lock_timeout": "IUCORE_LOCK_TIMEOUT",
    "statement_timeout": "IUCORE_STATEMENT_TIMEOUT",
    "lock_wait": "IUCORE_LOCK_WAIT",
    "lock_retries": "IUCORE_LOCK_RETRIES",
    "retry_budget": "IUCORE_RETRY_BUDGET",
}
_DEFAULTS: dict[str, str | None] = {
    "database_url": None,
    "home": None,
    "pg_major": None,
    "lock_timeout": DEFAULT_LOCK_TIMEOUT,
    "statement_timeout": DEFAULT_STATEMENT_TIMEOUT,
    "lock_wait": DEFAULT_LOCK_WAIT,
    "lock_retries": DEFAULT_LOCK_RETRIES,
    "retry_budget": DEFAULT_RETRY_BUDGET,
}


@dataclass(frozen=True)
class Settings:
    """Every iucore setting with where it came from (flag, environment, alembic.ini, default)."""

    project: Path | None
    home: Path
    pg_major: int | None  # None: the server module picks the default wheel
    actor: str
    lock_timeout_ms: int
    statement_timeout_ms: int
    lock_wait_ms: int
    lock_retries: int
    retry_budget_ms: int
    # The raw URL may hold a password: never in a repr; `target` is its parsed form.
    database_url: str | None = field(default=None, repr=False)
    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        *,
        project: str | Path | None = None,
        ini: Path | None = None,
        url: str | None = None,
        actor: str | None = None,
        lock_timeout: str | None = None,
        statement_timeout: str | None = None,
        lock_wait: str | None = None,
        lock_retries: str | None = None,
        retry_budget: str | None = None,
        use_project: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Resolve every setting: flag > environment > `[iucore]` in alembic.ini > default.

        `ini` defaults to the project's alembic.ini; with `use_project=False`
        (plain alembic, which names its own ini) no project is looked for.
        """
        env = os.environ if environ is None else environ
        root = _project(project, env) if use_project else None
        if ini is None and root is not None:
            ini = root / "alembic.ini"
        file = _read_ini(ini)
        flags = {"database_url": url, "lock_timeout": lock_timeout,
                 "statement_timeout": statement_timeout, "lock_wait": lock_wait,
                 "lock_retries": lock_retries, "retry_budget": retry_budget}
        values: dict[str, str | None] = {}
        sources: dict[str, str] = {}  # key -> "flag" | the variable | "alembic.ini [iucore] key" | "default"
        for key, default in _DEFAULTS.items():
            if flags.get(key):
                values[key], sources[key] = flags[key], "flag"
            elif env.get(_ENV[key]):
                values[key], sources[key] = env[_ENV[key]], _ENV[key]
            elif key in file and ini is not None:
                values[key], sources[key] = file[key], f"{ini.name} [iucore] {key}"
            else:
                values[key], sources[key] = default, "default"

        def label(key: str) -> str:  # how an error names the setting: where the bad value came from
            return key if sources[key] in ("flag", "default") else sources[key]

        home = Path(values["home"] or Path.cwd() / ".iucore")
        if _from_ini("home", sources) and ini is not None and not home.is_absolute():
            home = ini.parent / home  # relative to the ini that names it
        major: int | None = None
        if values["pg_major"] is not None:
            try:
                major = int(str(values["pg_major"]))
            except ValueError:
                raise ConfigError(f"{label('pg_major')}: {values['pg_major']!r} is not a number",
                                  setting="pg_major") from None
        sources["actor"] = "flag" if actor else ("IUCORE_ACTOR" if env.get("IUCORE_ACTOR") else "default")
        resolved_actor = check_actor(
            actor or env.get("IUCORE_ACTOR") or _os_user(),
            {"flag": "--actor", "IUCORE_ACTOR": "IUCORE_ACTOR"}.get(
                sources["actor"], "the OS user name (the default actor; pass --actor NAME)"))
        return cls(
            project=root,
            home=home.resolve(),
            pg_major=major,
            actor=resolved_actor,
            lock_timeout_ms=parse_duration(str(values["lock_timeout"]), label("lock_timeout")),
            statement_timeout_ms=parse_duration(str(values["statement_timeout"]), label("statement_timeout")),
            lock_wait_ms=parse_duration(str(values["lock_wait"]), label("lock_wait")),
            lock_retries=parse_count(str(values["lock_retries"]), label("lock_retries")),
            retry_budget_ms=parse_duration(str(values["retry_budget"]), label("retry_budget")),
            database_url=values["database_url"],
            sources=sources,
        )

    def run_options(self, *, rehearse: bool = False) -> RunOptions:
        return RunOptions(lock_timeout_ms=self.lock_timeout_ms, statement_timeout_ms=self.statement_timeout_ms,
                          lock_wait_ms=self.lock_wait_ms, lock_retries=self.lock_retries,
                          retry_budget_ms=self.retry_budget_ms, actor=self.actor, rehearse=rehearse)


def _from_ini(key: str, sources: Mapping[str, str]) -> bool:
    return "[iucore]" in sources.get(key, "")


def _project(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """--project or $IUCORE_PROJECT (an error when it is not a project), else the search."""
    if explicit or env.get("IUCORE_PROJECT"):
        return find_project_root(explicit or env["IUCORE_PROJECT"])
    try:
        return find_project_root()
    except ConfigError:
        return None  # commands that need a project say so when they ask for it


def _read_ini(ini: Path | None) -> dict[str, str]:
    """The `[iucore]` section; a URL in `[alembic] sqlalchemy.url` is refused, not silently ignored."""
    if ini is None or not ini.is_file():
        return {}
    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read(ini, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ini}: not a readable ini file ({type(exc).__name__})") from None
    if cp.has_option("alembic", "sqlalchemy.url") and cp.get("alembic", "sqlalchemy.url").strip():
        raise ConfigError(
            f"{ini} sets [alembic] sqlalchemy.url: iucore takes the database from --url, "
            "IUCORE_DATABASE_URL or [iucore] database_url (never with a password in a file: "
            "use ~/.pgpass or PGPASSWORD); remove sqlalchemy.url",
            setting="sqlalchemy.url",
        )
    if not cp.has_section("iucore"):
        return {}
    return {k: v.strip() for k, v in cp.items("iucore") if k in _DEFAULTS}


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
