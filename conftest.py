"""Run the code blocks of the documentation pages (docs/**/*.md, README.md) as tests.

Every fenced ```python (or ```pycon) block of every page under ``docs/`` is a test item
(``docs/cookbook.md::line 42``).  The blocks of one page run in order in one
namespace, as a reader would type them: an item first runs the page's earlier
blocks that have not run yet.  A block holding ``>>>`` prompts runs as a doctest
(its printed output is checked; an exception's module path is ignored, so
``MixingError: ...`` matches ``xpdiff.MixingError``); any other block is executed
and must not raise.

A block that needs something the machine may lack says so in an HTML comment on
the line just above it, ``<!-- requires: cupy -->`` (comma-separated names):
``cupy`` (or ``gpu``) means CuPy with a usable CUDA device, any other name an
importable module.  Where it is missing the block is skipped with that reason.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
from pathlib import Path

import pytest

# SciPy reads SCIPY_ARRAY_API once, when it is first imported; the pages that
# differentiate through SciPy set it before their import, as a reader would, but
# in the test process another test may have imported SciPy first. So the whole
# test process runs with SciPy's array API support on.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
REQUIRES = re.compile(r"<!--\s*requires:\s*(?P<names>[^>]*?)\s*-->\s*$")
_QUALIFIED_EXC = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*(?::|$))", re.M)


def blocks(text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """The page's ``python`` and ``pycon`` blocks as (line of the fence, code, required names)."""
    out = []
    for m in FENCE.finditer(text):
        if m.group("lang") not in ("python", "pycon"):
            continue
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        req = REQUIRES.search(before)
        names = tuple(n.strip() for n in req.group("names").split(",") if n.strip()) if req else ()
        indent = m.group("indent")
        body = "\n".join(s[len(indent):] if s.startswith(indent) else s
                         for s in m.group("body").split("\n"))
        out.append((line, body, names))
    return out


def _missing(name: str) -> str | None:
    """Why ``name`` is not available here, or None when it is."""
    if name in ("cupy", "gpu"):
        if importlib.util.find_spec("cupy") is None:
            return "CuPy is not installed"
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "CuPy finds no CUDA device"
        except Exception as e:  # no driver, no device: CuPy raises its own runtime errors
            return f"CuPy has no usable CUDA device ({type(e).__name__})"
        return None
    return None if importlib.util.find_spec(name) is not None else f"{name} is not installed"


class _Checker(doctest.OutputChecker):
    """Doctest output checker that ignores the module path of an exception's class."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        if super().check_output(want, got, optionflags):
            return True
        return super().check_output(_QUALIFIED_EXC.sub("", want), _QUALIFIED_EXC.sub("", got), optionflags)


class BlockFailed(Exception):
    """A code block of a page raised or printed something else than the page says."""


class MarkdownPage(pytest.File):
    """One documentation page: its python blocks share a namespace and run in order."""

    def collect(self):
        self.blocks = blocks(self.path.read_text(encoding="utf-8"))
        self.namespace: dict = {"__name__": f"docs.{self.path.stem}"}
        self.done = 0          # blocks run so far
        self.failed_at = None  # line of the first block that failed
        for i, (line, _, names) in enumerate(self.blocks):
            yield CodeBlock.from_parent(self, name=f"line {line}", index=i, requires=names)

    def run_block(self, i: int) -> None:
        line, body, _ = self.blocks[i]
        if ">>>" in body:
            test = doctest.DocTestParser().get_doctest(body, self.namespace, f"{self.path.name}:{line}",
                                                       str(self.path), line)
            runner = doctest.DocTestRunner(checker=_Checker(),
                                           optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
            report: list[str] = []
            result = runner.run(test, out=report.append, clear_globs=False)
            self.namespace = test.globs  # the doctest ran in a copy of the namespace
            if result.failed:
                raise BlockFailed("".join(report))
        else:
            exec(compile("\n" * line + body, str(self.path), "exec"), self.namespace)

    def run_until(self, i: int) -> None:
        while self.done <= i:
            j = self.done
            self.done += 1
            if self.failed_at is not None:
                pytest.skip(f"not run: the block at line {self.failed_at} of this page failed")
            if self.blocks[j][2] and any(_missing(n) for n in self.blocks[j][2]):
                continue  # a skipped block: later blocks must not depend on it
            try:
                self.run_block(j)
            except BaseException:
                self.failed_at = self.blocks[j][0]
                raise


class CodeBlock(pytest.Item):
    def __init__(self, *, index: int, requires: tuple[str, ...], **kw):
        super().__init__(**kw)
        self.index, self.requires = index, requires

    def runtest(self) -> None:
        for n in self.requires:
            why = _missing(n)
            if why:
                pytest.skip(f"requires {n}: {why}")
        self.parent.run_until(self.index)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, BlockFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.parent.blocks[self.index][0] - 1, f"{self.path.name}: {self.name}"


ROOT = Path(__file__).parent


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix == ".md" and (ROOT / "docs" in file_path.parents or file_path == ROOT / "README.md"):
        return MarkdownPage.from_parent(parent, path=file_path)
    return None


collect_ignore = ["docs/hooks", "mkdocs.yml"]
