"""Pytrees of arguments and outputs: a thin layer over optree.

Layer: core.  May import: the standard library and ``optree``.
"""

from __future__ import annotations

from typing import Any

import optree

NONE_IS_LEAF = False


def flatten(tree: Any) -> tuple[list, Any]:
    return optree.tree_flatten(tree, none_is_leaf=NONE_IS_LEAF)


def flatten_into(tree: Any, treedefs: list) -> list:
    """The leaves of ``tree``, its structure appended to ``treedefs``: what a function
    over flat leaves returns, for its caller to rebuild the output
    (``unflatten(treedefs[-1], leaves)``)."""
    leaves, treedef = flatten(tree)
    treedefs.append(treedef)
    return leaves


def unflatten(treedef: Any, leaves: list) -> Any:
    return optree.tree_unflatten(treedef, leaves)


def path_text(path: tuple) -> str:
    """A leaf's path as its indexing, ``['b'][1]`` for ``('b', 1)``; empty for the root."""
    return "".join(f"[{k!r}]" for k in path)


def broadcast_prefix(prefix: Any, tree: Any, what: str) -> list:
    """Broadcast a pytree prefix (e.g. ``in_axes``) to the leaves of ``tree``."""
    try:
        return _broadcast(prefix, tree)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def _broadcast(prefix: Any, tree: Any) -> list:
    if prefix is None or isinstance(prefix, int):
        return [prefix] * len(flatten(tree)[0])
    if isinstance(prefix, (tuple, list)) and isinstance(tree, (tuple, list)):
        if len(prefix) != len(tree):
            raise ValueError(f"expected {len(tree)} entries to match the arguments, got {len(prefix)}")
        out = []
        for p, t in zip(prefix, tree):
            out.extend(_broadcast(p, t))
        return out
    if isinstance(prefix, dict) and isinstance(tree, dict):
        if set(prefix) != set(tree):
            raise ValueError(f"keys {sorted(prefix)} do not match the argument's keys {sorted(tree)}")
        out = []
        for key in sorted(tree):  # optree flattens dicts in sorted key order
            out.extend(_broadcast(prefix[key], tree[key]))
        return out
    raise ValueError(f"{prefix!r} does not match the structure of the arguments")
