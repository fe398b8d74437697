"""What the framework knows of a project's database beyond what its revisions declare.

The revisions declare what they add and remove (iu_core.framework.declarations);
that is all a project has to say. It may say more in `migrations/project.py`,
a module that binds one name, `FACTS = ProjectFacts(...)`:

- `shared_schemas`: schemas the project shares with another application (by
  default `public`, everyone's schema in PostgreSQL). There only declared or
  project-named objects are the project's; every other schema its
  declarations use is its own, whole.
- `name_stems`, `kind_prefixes`: the project's naming, `[<prefix>_]<stem>_…`,
  each a plain word (lower-case letters and digits).
  An object so named is the project's even when no revision declares it, so an
  undeclared one is drift (unless acknowledged).
- `reference_tables`: tables whose rows are configuration, not data, with the
  columns that count: the catalog fingerprint holds their rows.
- `observe`: the project's own observations, added to each observation of a
  run (iu_core.framework.observe): reference rows, gates.

A project without the file gets `ProjectFacts()`: what its revisions declare
is its, and the schemas other than `public` they use. The framework imports
the file the way Alembic imports env.py: by path, from the project; it never
imports the project's code itself.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    import psycopg

# observe(conn, state, tables): add the project's own figures to `state` (an
# iu_core.framework.observe.State, which builds on this module); `tables` are the project's
# tables present in the database (schema.name).
Observer = Callable[["psycopg.Connection[Any]", Any, "Mapping[str, str]"], None]


@dataclass(frozen=True)
class ProjectFacts:
    """A project's facts (see the module): its shared schemas, naming, reference tables, observations."""

    shared_schemas: tuple[str, ...] = ("public",)
    name_stems: tuple[str, ...] = ()
    kind_prefixes: tuple[str, ...] = ()
    reference_tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    observe: Observer | None = field(default=None, compare=False)

    @cached_property
    def name_pattern(self) -> str:
        """The naming as a regular expression (Python's and PostgreSQL's); one that matches no
        name when the project has no naming."""
        if not self.name_stems:
            return "^$"
        prefixes = "|".join(self.kind_prefixes)
        return (f"^(?:(?:{prefixes})_)?" if prefixes else "^") + "(?:" + "|".join(self.name_stems) + ")_"

    def name_ranges(self) -> list[tuple[str, str]]:
        """The naming as ranges of names in byte (C collation) order, [low, high): one per
        allowed beginning (`<stem>_`, `<prefix>_<stem>_`), so a catalog's name index finds the
        candidates. Every name the naming allows lies in one of them."""
        starts = [f"{stem}_" for stem in self.name_stems]
        starts += [f"{kind}_{stem}_" for kind in self.kind_prefixes for stem in self.name_stems]
        return [(s, s[:-1] + chr(ord(s[-1]) + 1)) for s in sorted(starts)]

    def named(self, name: str) -> bool:
        """True for an unqualified object name that follows the project's naming."""
        return bool(self.name_stems) and re.match(self.name_pattern, name) is not None


FILE = Path("migrations") / "project.py"
_PLAIN_WORD = re.compile(r"[a-z0-9]+")
_LOADED: dict[tuple[str, int], ProjectFacts] = {}


def load(project: Path) -> ProjectFacts:
    """The facts `project/migrations/project.py` binds to FACTS (loaded once while it is unchanged),
    else none."""
    path = (project / FILE).resolve()
    if not path.is_file():
        return ProjectFacts()
    key = (str(path), path.stat().st_mtime_ns)
    facts = _LOADED.get(key)
    if facts is None:
        spec = importlib.util.spec_from_file_location(f"iucore_project_{abs(hash(key))}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        facts = getattr(module, "FACTS", None)
        if not isinstance(facts, ProjectFacts):
            raise ConfigError(f"{path}: binds no FACTS = ProjectFacts(...) (iu_core.framework.facts)",
                              setting="project facts")
        # The naming is read as text three ways (a regular expression, LIKE patterns,
        # ranges of the name indexes): only plain words mean the same to all three.
        odd = [w for w in (*facts.name_stems, *facts.kind_prefixes) if not _PLAIN_WORD.fullmatch(w)]
        if odd:
            raise ConfigError(f"{path}: name_stems and kind_prefixes must be lower-case letters and "
                              f"digits; not {', '.join(map(repr, odd))}", setting="project facts")
        _LOADED[key] = facts
    return facts
