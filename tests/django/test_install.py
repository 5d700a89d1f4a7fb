"""Installing ``achannels[django]`` brings a server for runserver, and neither
Daphne nor Twisted."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, requires

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def requirement_tree(name: str, extras: frozenset[str]) -> set[str]:
    """Names of every installed distribution ``name[extras]`` pulls in."""
    seen: set[str] = set()
    pending = [(name, extras)]
    while pending:
        current, current_extras = pending.pop()
        try:
            lines = requires(current) or []
        except PackageNotFoundError:
            continue  # optional on this platform and not installed
        for line in lines:
            requirement = Requirement(line)
            marker = requirement.marker
            wanted = marker is None or any(
                marker.evaluate({"extra": extra}) for extra in current_extras | {""}
            )
            key = canonicalize_name(requirement.name)
            if wanted and key not in seen:
                seen.add(key)
                pending.append((key, frozenset(requirement.extras)))
    return seen


def test_django_extra_pulls_uvicorn_with_websockets_but_no_daphne_or_twisted() -> None:
    tree = requirement_tree("achannels", frozenset({"django"}))
    assert {"django", "uvicorn", "websockets"} <= tree, tree
    assert not {"daphne", "twisted", "channels"} & tree, tree
