"""Acknowledged extras: IU-Core-named objects a DBA accepted, one by one, in the project.

Production holds IU-Core-named objects from macros outside the chain (seed
002 A4: "the unrelated pre-existing fn_iu_gateway_write_guard"). Each such
object is drift until a DBA acknowledges it in `acknowledged.toml` at the
project root, by its exact inventory name (functions with their signature, as
`iucore inventory` prints them), with a reason and who acknowledged it:

    [[extra]]
    class = "function"
    name = "public.fn_iu_gateway_write_guard()"
    reason = "gateway write guard from an earlier macro (seed 002 A4), not part of the chain"
    by = "dba@example"
    database = "directus"   # optional: applies on this database only

There is no pattern and no blanket switch: a name with a wildcard, an object
the chain itself declares, or a name outside IU Core's scope is refused as bad
input. Inventory, preflight and adopt name every extra and say whether it is
acknowledged; adopt records the acknowledgements it relied on in its audit row.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..framework.declarations import CLASSES
from ..framework.scope import scope_of

FILE = "acknowledged.toml"
_KEYS = {"class", "name", "reason", "by", "database"}
_WILDCARDS = set("*?%[]")


@dataclass(frozen=True)
class Acknowledgement:
    cls: str
    name: str
    reason: str
    by: str
    database: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.cls, self.name)

    def applies_to(self, database: str) -> bool:
        return self.database is None or self.database == database

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"class": self.cls, "name": self.name, "reason": self.reason, "by": self.by}
        if self.database is not None:
            out["database"] = self.database
        return out


def normalise(cls: str, name: str) -> str:
    """A function's argument list spaced the way the catalog prints it: `f(a, b)`."""
    name = name.strip()
    if cls == "function" and name.endswith(")") and "(" in name:
        head, args = name[:-1].split("(", 1)
        parts = [" ".join(a.split()) for a in args.split(",")] if args.strip() else []
        return f"{head.strip()}({', '.join(parts)})"
    return name


def load(project: Path) -> list[Acknowledgement]:
    """The project's acknowledgements, validated against its chain; none when the file is absent."""
    path = project / FILE
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML: {exc}", file=str(path)) from None
    unknown = set(data) - {"extra"}
    if unknown:
        raise BadInput(f"{path}: unknown key(s) {sorted(unknown)}; the file holds [[extra]] entries only",
                       file=str(path))
    entries = data.get("extra", [])
    if not isinstance(entries, list):
        raise BadInput(f"{path}: `extra` must be an array of tables ([[extra]])", file=str(path))
    scope = scope_of(project)
    out: list[Acknowledgement] = []
    seen: set[tuple[str, str, str | None]] = set()
    for i, entry in enumerate(entries, 1):
        where = f"{path} [[extra]] #{i}"

        def bad(why: str, where: str = where, i: int = i) -> BadInput:
            return BadInput(f"{where}: {why}", file=str(path), entry=i)

        if not isinstance(entry, dict):
            raise bad("must be a table with class, name, reason, by")
        extra_keys = set(entry) - _KEYS
        if extra_keys:
            raise bad(f"unknown key(s) {sorted(extra_keys)}; allowed: {sorted(_KEYS)}")
        for key in ("class", "name", "reason", "by"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise bad(f"`{key}` is required (a non-empty string)")
        if "database" in entry and (not isinstance(entry["database"], str) or not entry["database"].strip()):
            raise bad("`database`, when given, must be a non-empty string")
        cls = entry["class"].strip()
        if cls not in CLASSES:
            raise bad(f"class {cls!r} is not an inventory class; classes: {', '.join(CLASSES)}")
        name = normalise(cls, entry["name"])
        if _WILDCARDS & set(name.split("(", 1)[0]):
            raise bad(f"{name!r}: acknowledge one object by its exact name; patterns are not accepted")
        _check_shape(cls, name, bad)
        if (cls, name) in scope.declared_by:
            raise bad(f"{cls} {name} is declared by revision {scope.declared_by[(cls, name)]}: "
                      "it is part of the chain, not an extra, and cannot be acknowledged")
        if not scope.owns_name(cls, name):
            raise bad(f"{cls} {name} is not IU-Core-named (see iu_core/scope.py): iucore never "
                      "reports it, so there is nothing to acknowledge")
        ack = Acknowledgement(cls, name, entry["reason"].strip(), entry["by"].strip(),
                              entry["database"].strip() if "database" in entry else None)
        if (cls, name, ack.database) in seen:
            raise bad(f"{cls} {name} is acknowledged twice")
        seen.add((cls, name, ack.database))
        out.append(ack)
    return out


def _check_shape(cls: str, name: str, bad: Any) -> None:
    dots = name.split("(", 1)[0].count(".")
    if cls in ("table", "view") and dots != 1:
        raise bad(f"{cls} name {name!r} must be schema.name")
    if cls == "function" and (dots != 1 or not name.endswith(")") or "(" not in name):
        raise bad(f"function name {name!r} must be schema.name(argument types), e.g. public.fn_iu_x(text, integer)")
    if cls == "trigger" and dots != 2:
        raise bad(f"trigger name {name!r} must be schema.table.trigger")


def applicable(acks: list[Acknowledgement], database: str) -> dict[tuple[str, str], Acknowledgement]:
    """The acknowledgements that apply on `database`, by (class, name)."""
    return {a.key: a for a in acks if a.applies_to(database)}
