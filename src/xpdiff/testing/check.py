"""``xpdiff check``: the op-table derivative checks on one backend and device.

Every entry of :data:`xpdiff.testing.optable.OPS` is checked on arrays created on the
chosen backend and device:

* ``grad``: forward mode vs central differences and reverse mode by the
  inner-product identity (:func:`xpdiff.testing.check_grads`), to second order
  unless the entry says otherwise;
* ``vmap``: ``vmap(f)`` vs a loop over slices (:func:`xpdiff.testing.check_vmap`);
* ``residency``: ``jacfwd``/``jacrev`` (and ``batch_ndim=1`` for batched entries)
  return arrays of the inputs' backend on the inputs' device.

The checks read values back to the host to compare them (that is what a check
is); the transformations themselves never do.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from .. import backend as _backend
from .. import transforms
from ..core import raw_namespace
from ..namespaces import namespace_for
from . import check_grads, check_vmap, optable


@dataclass
class Failure:
    """One failed check: the op-table entry, which check, and the error."""

    op: str
    check: str
    error: str


@dataclass
class CheckReport:
    """What :func:`run_checks` found."""

    backend: str
    device: Any
    dtype: str
    n_ops: int = 0
    passed: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and self.n_ops > 0

    @property
    def failed_ops(self) -> list[str]:
        return sorted({f.op for f in self.failures})

    def summary(self) -> str:
        """The pass/fail summary printed by ``xpdiff check``."""
        lines = [f"backend {self.backend}, device {_backend.device_label(self.device)}, "
                 f"dtype {self.dtype}: {len(self.passed)} of {self.n_ops} op-table entries pass, "
                 f"{len(self.failed_ops)} fail ({self.seconds:.1f} s)"]
        for f in self.failures:
            lines.append(f"  FAIL {f.op} [{f.check}]: {f.error}")
        return "\n".join(lines)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip():
            text = line.strip()
            break
    return f"{type(e).__name__}: {text[:300]}"


def _where(e: BaseException) -> str:
    """The innermost xpdiff frame of a traceback (file:line), to locate a failure."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "xpdiff" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {f.filename.rsplit('xpdiff', 1)[-1].lstrip('/')}:{f.lineno})"


class _CheckProgress:
    """tqdm when installed, else a plain bar on ``stream`` (one line when not a terminal)."""

    def __init__(self, total: int, enabled: bool, stream: TextIO, desc: str):
        self.total, self.n, self.enabled, self.stream, self.desc = total, 0, enabled, stream, desc
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, file=stream, unit="op", leave=True)

    def update(self, name: str, ok: bool) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(name, refresh=False)
            self.bar.update(1)
            return
        if self.stream.isatty():
            width = 30
            done = width * self.n // max(self.total, 1)
            self.stream.write(f"\r{self.desc} [{'#' * done}{'.' * (width - done)}] "
                              f"{self.n}/{self.total} {name[:24]:<24}")
        else:
            self.stream.write("." if ok else "F")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            self.stream.write("\n")
            self.stream.flush()


def _sample(op: Any, bk: Any, device: Any, dtype: Any, lead: tuple, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [_backend.on_device(bk, a, device, dtype) for a in op.sample(rng, lead)]


def _table_fn(op: Any) -> Callable:
    """``op.fn`` called with xpdiff's namespace of its arguments' backend (what
    ``x.__array_namespace__()`` gives for a traced ``x``; it takes raw arrays too, and
    torch tensors have no ``__array_namespace__`` of their own)."""
    def f(*args: Any) -> Any:
        return op.fn(namespace_for(raw_namespace(args[0])), *args)

    f.__name__ = op.name
    return f


def _check_resident(results: Iterable, bk_name: str, device: Any, what: str) -> None:
    for r in results:
        name = _backend.backend_name(r)
        if name != bk_name:
            raise AssertionError(f"{what} returned an array of backend {name}, expected {bk_name}")
        if not _backend.same_device(r.device, device):
            raise AssertionError(f"{what} returned an array on device "
                                 f"{_backend.device_label(r.device)}, expected "
                                 f"{_backend.device_label(device)}")


def check_op(op: Any, bk: Any, device: Any, dtype: Any, order2: bool = True) -> list[Failure]:
    """Run every check of one op-table entry; return the failures (empty when all pass)."""

    f = _table_fn(op)
    bk_name = _backend.backend_name(bk)
    fails: list[Failure] = []

    def attempt(check: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as e:  # a failing check is reported, the others still run
            fails.append(Failure(op.name, check, _first_line(e) + _where(e)))

    order = 2 if (order2 and op.order2) else 1
    attempt(f"grad order {order}", lambda: check_grads(f, _sample(op, bk, device, dtype, (), 0),
                                                         order=order))
    attempt("vmap", lambda: check_vmap(f, _sample(op, bk, device, dtype, (3,), 2)))

    def residency() -> None:
        args = _sample(op, bk, device, dtype, (), 1)
        nums, home = tuple(range(len(args))), args[0].device
        for mode in ("fwd", "rev"):
            J = transforms.api.jacobian(f, argnums=nums, mode=mode)(*args)
            _check_resident(J, bk_name, home, f"jacobian(mode={mode!r})")
        if op.batched:
            args = _sample(op, bk, device, dtype, (3,), 3)
            for mode in ("fwd", "rev"):
                J = transforms.api.jacobian(f, argnums=nums, batch_ndim=1, mode=mode)(*args)
                _check_resident(J, bk_name, home, f"jacobian(batch_ndim=1, mode={mode!r})")

    attempt("residency", residency)
    return fails


def run_checks(backend: str | None = None, device: Any = None, *, dtype: str = "float64",
               select: Sequence[str] | None = None, order2: bool = True, progress: bool = True,
               stream: TextIO | None = None) -> CheckReport:
    """Run the op-table checks on one backend and device.

    Args:
        backend: a backend name (``None``: ``$XPDIFF_BACKEND`` or numpy).
        device: a device object or its spelling (``"device1"``, ``"cuda:0"``...);
            ``None`` is the backend's default device.
        dtype: ``"float64"`` or ``"float32"`` (tolerances follow the dtype).
        select: run only the entries whose name contains one of these strings.
        order2: check second derivatives where the table allows.
        progress: show a progress bar on ``stream`` (default stderr).

    Returns:
        A :class:`CheckReport`; ``report.ok`` is ``True`` when every check passed.

    >>> report = run_checks("numpy", select=["matmul"], progress=False)
    >>> report.ok, report.n_ops
    (True, 5)
    """
    name = _backend.default_backend() if backend is None else _backend.canonical_name(backend)
    bk = _backend.backend_namespace(name)
    dev = _backend.parse_device(name, device)
    if name == "jax" and dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 arrays need it (process-wide)
    if dtype not in ("float64", "float32"):
        raise ValueError(f"xpdiff check: dtype must be 'float64' or 'float32', got {dtype!r}")
    dt = getattr(bk, dtype)
    ops = [op for op in optable.OPS if not select or any(s in op.name for s in select)]
    home = _backend.on_device(bk, [0.0], dev, dt).device  # where the checks' arrays live
    report = CheckReport(backend=name, device=home, dtype=dtype, n_ops=len(ops))
    bar = _CheckProgress(len(ops), progress, stream or sys.stderr, f"check {name}")
    t0 = time.perf_counter()
    try:
        for op in ops:
            fails = check_op(op, bk, dev, dt, order2)
            if fails:
                report.failures.extend(fails)
            else:
                report.passed.append(op.name)
            bar.update(op.name, not fails)
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t0
    return report
