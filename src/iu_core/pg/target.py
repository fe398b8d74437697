"""Target: a database to talk to, parsed once, with its secrets kept apart.

A URL (`postgresql://…`, `postgres://…`) or a key=value connection string is
parsed by libpq's own rules (`psycopg.conninfo.conninfo_to_dict`: percent-
decoding, `?password=`, `?host=/socket/dir`, quoted values …) into its
keywords. The password (and `sslpassword`) is held apart from the other
keywords; every display is BUILT from the other keywords, so no message,
JSON field or audit row can carry it, whatever characters it holds. The
password travels only to libpq: in the connect keywords of `db.connect`, or
in PGPASSWORD for a child process (`backup.py`), never in argv.

A string that does not parse is refused with a message that says what is
wrong and never quotes the input: libpq's own parse errors quote the
offending token, which may be the password, so they are translated, not
passed on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from ..errors import ConfigError

# Keywords whose value is a secret: never displayed, never in argv.
SECRET_KEYS = ("password", "sslpassword")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_URI_PREFIXES = ("postgresql://", "postgres://")
_EXPECTED = (
    "expected postgresql://USER@HOST[:PORT]/DBNAME or 'host=HOST dbname=DBNAME user=USER' "
    "(password: ~/.pgpass or PGPASSWORD)"
)
# A host that can stand in the authority part of a displayed URI as it is.
_PLAIN_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._\-]*[A-Za-z0-9])?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")

# libpq's parse errors (fe-connect.c) -> what we say instead. Each of libpq's
# messages quotes a piece of the input; none of ours does.
_LIBPQ_PARSE_ERRORS = (
    ("invalid percent-encoded token",
     "a malformed percent-escape: every % must start %XX with two hex digits (write a literal % as %25)"),
    ("forbidden value %00", "a percent-encoded NUL (%00), which libpq forbids"),
    ("unexpected spaces found", "an unencoded space: percent-encode spaces in a URL as %20"),
    ("invalid URI query parameter",
     "an unknown query parameter: libpq takes only its connection keywords (host, port, dbname, user, "
     "password, sslmode, options, application_name, connect_timeout, …); percent-encode & and = inside values"),
    ("missing key/value separator", "a query parameter without '=' (write ?key=value&key=value)"),
    ("extra key/value separator", "an unencoded '=' inside a query value (percent-encode it as %3D)"),
    ("invalid connection option",
     "an unknown connection option: libpq takes only its connection keywords (host, port, dbname, user, "
     "password, sslmode, options, …); quote a value that holds spaces: password='a b'"),
    ("missing \"=\" after",
     "a key=value connection string needs key=value pairs separated by spaces; quote a value that holds "
     "spaces (password='a b')"),
    ("unterminated quoted string", "an unterminated quoted value (close the ', or write a literal ' as \\')"),
    ("matching \"]\"", "an IPv6 host without its closing ]"),
    ("IPv6 host address may not be empty", "an empty IPv6 host []"),
    ("unexpected character", "an unexpected character after the host (expected ':PORT' or '/DBNAME')"),
)


@dataclass(frozen=True)
class Target:
    """A database to talk to: libpq keywords, the secrets kept apart.

    Build one with `Target.parse(text)`; `display` is what every message
    shows. `libpq_kwargs()`, `libpq` and `password` carry the secret and
    are for libpq only (a connect call, PGPASSWORD of a child process).
    """

    _params: tuple[tuple[str, str], ...]
    _secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    embedded: bool = False

    # -- building --------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, *, embedded: bool = False) -> Target:
        """Parse a URL or key=value string with libpq's rules, or raise ConfigError (exit 2)."""
        return cls.of(embedded=embedded, **_parse(text))

    @classmethod
    def of(cls, *, embedded: bool = False, **params: str) -> Target:
        """A target from libpq keywords (validated as `parse` does)."""
        _validate(params)
        public = tuple(sorted((k, v) for k, v in params.items() if k not in SECRET_KEYS))
        secrets = tuple(sorted((k, v) for k, v in params.items() if k in SECRET_KEYS))
        return cls(public, secrets, embedded)

    def with_database(self, dbname: str) -> Target:
        """The same server, user and secrets; another database."""
        params = {**dict(self._params), **dict(self._secrets), "dbname": dbname}
        return Target.of(embedded=self.embedded, **params)

    # -- what may be shown -------------------------------------------------------
    @property
    def params(self) -> Mapping[str, str]:
        """The libpq keywords without the secrets."""
        return dict(self._params)

    @property
    def dbname(self) -> str | None:
        return dict(self._params).get("dbname")

    @property
    def display(self) -> str:
        """A postgresql:// URI built from the keywords without the secrets (libpq reads it back)."""
        return _display(dict(self._params))

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"Target({self.display!r}{', embedded=True' if self.embedded else ''})"

    def without_password(self) -> str:
        """A libpq connection string without the secrets: for argv, which `ps` shows."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", **dict(self._params))

    # -- for libpq only ----------------------------------------------------------
    @property
    def password(self) -> str | None:
        return dict(self._secrets).get("password")

    def libpq_kwargs(self) -> dict[str, str]:
        """Every keyword, secrets included: for a libpq connect call only."""
        return {**dict(self._params), **dict(self._secrets)}

    @property
    def libpq(self) -> str:
        """The display URI with the secrets in it: for libpq only (psql, a test's own connection), never to print."""
        return _display(dict(self._params), dict(self._secrets))


def _parse(text: str) -> dict[str, str]:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"the database URL is empty: {_EXPECTED}")
    text = text.strip()
    if "\x00" in text:
        raise ConfigError("the database URL contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            "the database URL is not valid UTF-8 (the shell passed bytes that are not UTF-8)"
        ) from None
    scheme = _SCHEME.match(text)
    if scheme:
        _check_scheme(scheme.group(1))
        _check_uri_shape(text)
    elif "=" not in text:
        raise ConfigError(f"the database URL is neither a postgresql:// URL nor a key=value string: {_EXPECTED}")
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(text)
    except ProgrammingError as exc:
        raise ConfigError(f"malformed database URL: {_explain(str(exc))}") from None
    return {k: str(v) for k, v in params.items()}


def _check_scheme(scheme: str) -> None:
    if f"{scheme}://" in _URI_PREFIXES:
        return
    if scheme.lower() in ("postgresql", "postgres"):
        raise ConfigError(f"database URL scheme {scheme!r}: libpq reads only lowercase postgresql:// or postgres://")
    if "+" in scheme and scheme.split("+", 1)[0].lower() in ("postgresql", "postgres"):
        raise ConfigError(
            f"database URL scheme {scheme!r} is SQLAlchemy's form: give iucore the libpq form, postgresql://…"
        )
    raise ConfigError(f"unsupported database URL scheme {scheme!r}: iucore speaks PostgreSQL (postgresql://…)")


def _check_uri_shape(text: str) -> None:
    """Refuse the shapes where libpq would take part of a password for a host or database name.

    libpq takes the user info up to the first '@' before the first '/': an
    unencoded '@', '/' or '?' in a password would move the rest of it into
    the host, the database name or the query, which are displayed.
    """
    rest = text.split("://", 1)[1]
    head, slash, tail = rest.partition("/")
    path = tail.split("?", 1)[0] if slash else ""
    hint = "percent-encode @ / ? in the user or password (%40, %2F, %3F)"
    if head.count("@") > 1:
        raise ConfigError(f"malformed database URL: more than one '@' before the host; {hint}")
    if "@" in head and "?" in head.split("@", 1)[0]:
        raise ConfigError(f"malformed database URL: a '?' before the '@' that ends the user info; {hint}")
    if "@" in path:
        raise ConfigError(f"malformed database URL: an '@' after the host, in the database name; {hint}")


def _explain(libpq_message: str) -> str:
    for needle, ours in _LIBPQ_PARSE_ERRORS:
        if needle in libpq_message:
            return ours
    return f"libpq cannot parse it; {_EXPECTED}"


def _validate(params: Mapping[str, str]) -> None:
    if not params.get("dbname") and "service" not in params:
        shown = _display({k: v for k, v in params.items() if k not in SECRET_KEYS})
        raise ConfigError(f"the database URL {shown} names no database: add /DBNAME (or dbname=DBNAME)")
    for port in (params.get("port") or "").split(","):
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            # The value is not shown: a mistyped URL can put part of a password there.
            raise ConfigError("malformed database URL: the port is not a number from 1 to 65535")


def _display(params: dict[str, str], secrets: Mapping[str, str] | None = None) -> str:
    """A postgresql:// URI of `params`; the secrets go in only when given (Target.libpq)."""
    secrets = dict(secrets or {})
    user = params.pop("user", None)
    host = params.pop("host", None)
    port = params.pop("port", None)
    dbname = params.pop("dbname", None)
    netloc = quote(user, safe="") if user else ""
    if user and "password" in secrets:
        netloc += ":" + quote(secrets.pop("password"), safe="")
    netloc += "@" if user else ""
    query: list[tuple[str, str]] = []
    if host is not None and _PLAIN_HOST.fullmatch(host) and (port is None or port.isdigit()):
        netloc += host
    elif host is not None and ":" in host and _IPV6.fullmatch(host) and (port is None or port.isdigit()):
        netloc += f"[{host}]"
    else:  # a socket directory, several hosts, anything else: as query parameters
        if host is not None:
            query.append(("host", host))
        if port is not None:
            query.append(("port", port))
        port = None
    if port is not None:
        netloc += f":{port}"
    query.extend(sorted({**params, **secrets}.items()))
    out = f"postgresql://{netloc}/" + (quote(dbname, safe="") if dbname else "")
    if query:
        out += "?" + "&".join(f"{k}={quote(v, safe='/:,')}" for k, v in query)
    return out
