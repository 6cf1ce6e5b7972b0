"""Where a run may read: the trees its ``sources`` entries name, plus ``allowed_roots``.

A source root is what an entry names: a directory, a file, a gs:// prefix as written, or
the fixed part of a glob (``/data/**/*.txt`` → ``/data/``). Local roots are resolved
through their symlinks once, in the launching process, so a target is inside a root
exactly when its resolved path lies below the root's. Listing follows a symlink, and a
records file follows a media reference, only into these trees.
"""
from __future__ import annotations

import os
from typing import Sequence

GLOB_CHARS = "*?["


def fixed_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard, cut back to a whole folder."""
    cut = min((pattern.find(c) for c in GLOB_CHARS if c in pattern), default=-1)
    if cut < 0:
        return pattern
    return pattern[: pattern.rfind("/", 0, cut) + 1]


def resolve_root(entry: str) -> str:
    """The tree one ``sources`` (or ``allowed_roots``) entry covers."""
    if entry.startswith("gs://"):
        return fixed_prefix(entry)
    local = fixed_prefix(os.path.expanduser(entry)) or "."
    return os.path.realpath(os.path.abspath(local))


def policy_roots(sources: Sequence[str], allowed_roots: Sequence[str] = ()) -> tuple[str, ...]:
    """Every tree the run may read: each source root, then the explicit allow-list."""
    return tuple(dict.fromkeys(resolve_root(e) for e in [*sources, *allowed_roots]))


def within(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it, at a ``/`` boundary (``/a/bc`` is not in ``/a/b``)."""
    base = root.rstrip("/")
    return path == base or path.startswith(base + "/")


def inside_roots(path: str, roots: Sequence[str]) -> bool:
    return any(within(path, root) for root in roots)
