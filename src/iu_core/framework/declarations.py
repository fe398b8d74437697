"""What a revision declares it adds to and removes from the inventory, read from its module.

Each revision file names its objects per class (`inventory = {"adds": {...}, "removes": {...}}`);
the scope of a chain (iu_core.framework.scope) and the expected inventory
(iu_core.release.inventory) are folds of these declarations along the chain.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadInput

CLASSES = ("table", "view", "function", "trigger", "config", "event_type", "route")

Inventory = dict[str, set[str]]


def empty() -> Inventory:
    return {c: set() for c in CLASSES}


def declared_delta(module: Any) -> tuple[Inventory, Inventory]:
    """(adds, removes) of one revision module, validated."""
    decl = getattr(module, "inventory", None)
    name = getattr(module, "revision", "?")
    if not isinstance(decl, dict):
        raise BadInput(f"revision {name} declares no `inventory` (adds/removes per class)")
    adds, removes = empty(), empty()
    for part, target in (("adds", adds), ("removes", removes)):
        for cls, names in (decl.get(part) or {}).items():
            if cls not in CLASSES:
                raise BadInput(f"revision {name}: unknown inventory class {cls!r}; classes: {CLASSES}")
            target[cls] = set(names)
    return adds, removes
