"""Griffe extension for the API reference: the docstrings' doctests as code blocks.

xpdiff's docstrings hold doctests directly (``>>> ...`` lines after the prose),
which Markdown would read as nested quotes, and a few reStructuredText roles
(``:func:`jacfwd```).  This extension, loaded by mkdocstrings, puts each run of
doctest lines at the docstring's top level into a ``pycon`` code block and turns
the roles into inline code, before the docstring is parsed.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`~?([^`]+)`")


def doctests_as_blocks(text: str) -> str:
    """Wrap top-level doctest runs (a ``>>>`` line up to the next blank line) in fences."""
    out: list[str] = []
    in_doctest = in_fence = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if not in_fence and not in_doctest and line.startswith(">>>"):
            out.append("```pycon")
            in_doctest = True
        elif in_doctest and not line.strip():
            out.append("```")
            in_doctest = False
        out.append(line)
    if in_doctest:
        out.append("```")
    return "\n".join(out)


class DocstringDoctests(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = doctests_as_blocks(_ROLE.sub(r"``\1``", obj.docstring.value))
