"""``xpdiff check --fuzz N``: random programs over the whole op table, every path checked.

Layer: testing (top).

A program is drawn from its own seed: one to three op-table entries, each fed with
values computed from the program's input (the input or an earlier op's output,
gathered to the entry's argument shape and squashed into the entry's input domain
by a smooth map), and an output made of every step's floating results.  The dtype
(float64 or float32) is drawn too unless given.  Each program is checked:

* ``fwd-rev``: ``jacfwd`` (structured tangents where they apply) against ``jacrev``;
* ``dense``: the dense path (``vmap`` of ``jvp`` over the rows of the identity);
* ``fd``: ``jacrev`` against central differences (computed in float64);
* ``chunked``: ``jacobian(chunk_size=1)``;
* ``vmap``: ``vmap(jacrev(f))`` and ``vmap(grad(s))`` (``s`` a weighted sum of the
  outputs) against a loop over samples;
* ``batch_ndim``: ``jacobian(batch_ndim=1)``, also chunked over samples
  (``chunk_size=1``), against the per-sample Jacobians (programs whose entries are
  all valid batched code);
* ``jit``: ``jit(jacrev(f))``, traced at one point and replayed at another;
* ``hessian``: ``hessian(s)`` against ``jacfwd(grad(s))``, its symmetry and central
  differences of ``grad(s)`` (entries with second derivatives), and
  ``hessian(s, batch_ndim=1)`` against the per-sample Hessians.

The first three run on every program; of the last five, one per program in turn
(by seed), or all of them with ``--fuzz-all``.

A program whose entries fail on plain arrays is not counted (``invalid``).  Program
``i`` of a run with ``--seed S`` has seed ``S + i``: ``xpdiff check --fuzz 1 --seed
S+i`` replays it alone.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from .. import backend as _backend
from ..jit import jit
from ..namespaces import namespace_for
from ..transforms import api as _api
from . import optable

B = 3  # samples in the vmap and batch_ndim checks
TOL = {"float64": {"path": 1e-8, "fd": 1e-5}, "float32": {"path": 1e-4, "fd": 2e-3}}


@dataclass
class Step:
    """One op-table entry of a program and how each argument is made."""

    op: Any
    sources: list  # per argument: index into the pool of live values (0: the input)
    gathers: list  # per argument: flat positions read from the source (numpy int64)
    scales: list  # per argument: (a, b) of the squashing map tanh(a * g + b)
    bases: list  # per argument: the op's own sample (numpy), or None for integer arguments


@dataclass
class RandomProgram:
    """A random program (see the module docstring); ``f(x)`` maps ``(n,)`` or a batch
    ``(B, n)`` to a vector ``(m,)`` / ``(B, m)``."""

    seed: int
    dtype: str
    n: int
    steps: list
    weights: np.ndarray | None = None

    @property
    def batched(self) -> bool:
        return all(s.op.batched for s in self.steps)

    @property
    def order2(self) -> bool:
        return all(s.op.order2 for s in self.steps)

    def describe(self) -> str:
        return f"seed {self.seed} ({self.dtype}, n={self.n}): " + " -> ".join(
            s.op.name for s in self.steps)


def _float_parts(out: Any, xp: Any) -> list:
    """The floating arrays of an op's result (complex ones as real and imaginary parts)."""
    if isinstance(out, (tuple, list)):
        return [p for o in out for p in _float_parts(o, xp)]
    if not hasattr(out, "dtype") or not hasattr(out, "shape"):
        return []
    if xp.isdtype(out.dtype, "complex floating"):
        return [xp.real(out), xp.imag(out)]
    if xp.isdtype(out.dtype, "real floating"):
        return [out]
    return []


def make_program(seed: int, ops: list, dtype: str | None = None) -> RandomProgram:
    """The program of ``seed`` over the op-table entries ``ops``."""
    rng = np.random.default_rng(seed)
    dt = dtype or ("float64", "float32")[int(rng.integers(2))]
    n = int(rng.integers(2, 6))
    steps, sizes = [], [n]  # sizes: flat per-sample size of each pool value (learnt when run)
    for _ in range(int(rng.integers(1, 4))):
        op = ops[int(rng.integers(len(ops)))]
        base = op.sample(np.random.default_rng(int(rng.integers(2**31))), ())
        sources, gathers, scales, bases = [], [], [], []
        for a in base:
            a = np.asarray(a)
            if not np.issubdtype(a.dtype, np.floating):
                sources.append(None)
                gathers.append(None)
                scales.append(None)
                bases.append(a)
                continue
            src = int(rng.integers(len(sizes)))
            m = max(1, a.size)
            sources.append(src)
            gathers.append(rng.integers(0, 1 << 30, size=m))  # reduced modulo the source's size
            scales.append((float(rng.uniform(0.5, 1.5) * rng.choice([-1, 1])), float(rng.uniform(-0.5, 0.5))))
            bases.append(a)
        steps.append(Step(op, sources, gathers, scales, bases))
        sizes.append(None)
    return RandomProgram(seed, dt, n, steps)


def _squash(xp: Any, g: Any, op: Any, i: int, base: np.ndarray, a: float, b: float, like: Any) -> Any:
    """An argument inside the entry's domain: a smooth function of ``g`` near ``base``."""
    mix = xp.tanh(g * a + b)
    if base.ndim >= 2 and base.shape[-1] == base.shape[-2] and np.allclose(base, np.swapaxes(base, -1, -2)):
        mix = (mix + xp.matrix_transpose(mix)) * 0.5  # keep symmetric samples symmetric
    c = xp.asarray(base, dtype=like.dtype, device=like.device)
    if op.sampler is not None:
        return c + mix * 0.1
    lo = op.low[i] if isinstance(op.low, tuple) else op.low
    hi = op.high[i] if isinstance(op.high, tuple) else op.high
    u = np.clip((base - lo) / (hi - lo), 0.1, 0.9)
    z = xp.asarray(np.log(u / (1 - u)), dtype=like.dtype, device=like.device)
    return lo + (hi - lo) / (1.0 + xp.exp(-(z + mix * 0.7)))


def program_fn(prog: RandomProgram, xp: Any) -> Callable:
    """``f(x)`` of a program, written against xpdiff's namespace ``xp`` (it takes plain
    and traced arrays; a leading batch dim is carried through)."""

    def f(x: Any) -> Any:
        lead = tuple(x.shape[:-1])
        pool = [xp.reshape(x, lead + (-1,))]
        outs = []
        for step in prog.steps:
            args = []
            for i, (src, gat, sc, base) in enumerate(zip(step.sources, step.gathers, step.scales,
                                                         step.bases)):
                if src is None:
                    args.append(xp.asarray(base, device=x.device))
                    continue
                v = pool[src]
                idx = xp.asarray(gat % v.shape[-1], device=x.device)
                g = xp.reshape(xp.take(v, idx, axis=-1), lead + tuple(base.shape))
                args.append(_squash(xp, g, step.op, i, base, sc[0], sc[1], x))
            parts = _float_parts(step.op.fn(xp, *args), xp)
            flat = [xp.reshape(p, lead + (-1,)) for p in parts]
            flat = [xp.astype(p, x.dtype) for p in flat if p.shape[-1] > 0]
            val = xp.concat(flat, axis=-1) if flat else xp.zeros(lead + (1,), dtype=x.dtype,
                                                                  device=x.device)
            pool.append(val)
            outs.append(val)
        return xp.concat(outs, axis=-1)

    return f


# --- the checks -----------------------------------------------------------------------------

class Mismatch(AssertionError):
    """Two paths (or a path and finite differences) disagree beyond the tolerance."""


def _err(a: Any, b: Any) -> float:
    a, b = np.asarray(_backend.to_host(a), np.float64), np.asarray(_backend.to_host(b), np.float64)
    if a.shape != b.shape:
        raise Mismatch(f"shapes {a.shape} and {b.shape} differ")
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        same = (np.isnan(a) == np.isnan(b)) & ((a == b) | np.isnan(a) | np.isfinite(a))
        if not np.all(same):
            return math.inf
        a, b = np.nan_to_num(a), np.nan_to_num(b)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def _close(what: str, a: Any, b: Any, tol: float) -> None:
    e = _err(a, b)
    if not e <= tol:
        raise Mismatch(f"{what}: relative error {e:.2e} > {tol:.0e}")


def check_program(prog: RandomProgram, bk: Any, device: Any, everything: bool = False) -> tuple[str, list]:
    """Check one program: ``("ok" | "invalid" | "fail", failures)``, each failure a
    ``(check, message)``.  ``fwd-rev``, ``dense`` and ``fd`` always run; of the costlier
    ``chunked``, ``vmap``, ``jit``, ``batch_ndim`` and ``hessian``, one chosen by the seed (all
    of them with ``everything=True``)."""
    xp = namespace_for(bk)
    f = program_fn(prog, xp)
    rng = np.random.default_rng(prog.seed + 7_919)
    x0 = rng.uniform(-1.0, 1.0, prog.n)
    X0 = rng.uniform(-1.0, 1.0, (B, prog.n))
    dt = getattr(bk, prog.dtype)

    def arr(a: np.ndarray, dtype: Any = dt) -> Any:
        return _backend.on_device(bk, a, device, dtype)

    try:
        y = f(arr(x0))
        if prog.batched:
            f(arr(X0))
        f64 = f(arr(x0, bk.float64))
        if not np.all(np.isfinite(_backend.to_host(f64))):
            return "invalid", []
    except Exception:  # the entries do not accept these arguments: not a derivative bug
        return "invalid", []
    m = y.shape[-1]
    w = arr(rng.standard_normal(m))
    tol = TOL[prog.dtype]
    fails: list = []

    def s(x: Any) -> Any:
        return xp.sum(f(x) * w, axis=-1)

    def attempt(check: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # recorded, the other checks still run
            fails.append((check, _describe(e)))

    x, X = arr(x0), arr(X0)
    J: dict = {}

    def fwd_rev() -> None:
        J["rev"] = _api.jacrev(f)(x)
        _close("jacfwd vs jacrev", _api.jacfwd(f)(x), J["rev"], tol["path"])

    def dense() -> None:
        eye = arr(np.eye(prog.n))
        cols = _api.vmap(lambda t: _api.jvp(f, (x,), (t,))[1])(eye)  # (n, m)
        _close("dense jvp rows vs jacrev", xp.matrix_transpose(cols), _jac(), tol["path"])

    def _jac() -> Any:
        if "rev" not in J:
            J["rev"] = _api.jacrev(f)(x)
        return J["rev"]

    def fd() -> None:
        f64fn = program_fn(prog, xp)
        best = math.inf
        for eps in (1e-6, 1e-4):
            cols = []
            for j in range(prog.n):
                e = np.zeros(prog.n)
                e[j] = eps
                hi = np.asarray(_backend.to_host(f64fn(arr(x0 + e, bk.float64))), np.float64)
                lo = np.asarray(_backend.to_host(f64fn(arr(x0 - e, bk.float64))), np.float64)
                cols.append((hi - lo) / (2 * eps))
            fdj = np.stack(cols, axis=-1)
            e_ = _err(_jac(), fdj)
            best = min(best, e_)
        if not best <= tol["fd"]:
            raise Mismatch(f"jacrev vs central differences: relative error {best:.2e} > "
                           f"{tol['fd']:.0e}")

    def chunked() -> None:
        _close("jacobian(chunk_size=1) vs jacrev", _api.jacobian(f, chunk_size=1)(x), _jac(),
               tol["path"])

    loop: dict = {}

    def per_sample() -> Any:
        if "J" not in loop:
            loop["J"] = np.stack([np.asarray(_backend.to_host(_api.jacrev(f)(X[i, ...])))
                                  for i in range(B)])
        return loop["J"]

    def vmapped() -> None:
        _close("vmap(jacrev) vs a loop", _api.vmap(_api.jacrev(f))(X), per_sample(), tol["path"])
        g = np.stack([np.asarray(_backend.to_host(_api.grad(s)(X[i, ...]))) for i in range(B)])
        _close("vmap(grad) vs a loop", _api.vmap(_api.grad(s))(X), g, tol["path"])

    def batched() -> None:
        _close("jacobian(batch_ndim=1) vs per-sample", _api.jacobian(f, batch_ndim=1)(X),
               per_sample(), tol["path"])
        _close("jacobian(batch_ndim=1, chunk_size=1) vs per-sample",
               _api.jacobian(f, batch_ndim=1, chunk_size=1)(X), per_sample(), tol["path"])

    def hessian() -> None:
        H = _api.hessian(s)(x)
        _close("hessian vs jacfwd(grad)", H, _api.jacfwd(_api.grad(s))(x), tol["path"])
        _close("hessian symmetry", H, xp.matrix_transpose(H), tol["path"] * 10)
        if prog.dtype == "float64":
            g = _api.grad(s)
            cols = []
            for j in range(prog.n):
                e = np.zeros(prog.n)
                e[j] = 1e-5
                cols.append((np.asarray(_backend.to_host(g(arr(x0 + e)))) -
                             np.asarray(_backend.to_host(g(arr(x0 - e))))) / 2e-5)
            _close("hessian vs central differences of grad", H, np.stack(cols, axis=-1), tol["fd"] * 10)
        if prog.batched:
            Hb = _api.hessian(s, batch_ndim=1)(X)
            Hl = np.stack([np.asarray(_backend.to_host(_api.hessian(s)(X[i, ...]))) for i in range(B)])
            _close("hessian(batch_ndim=1) vs per-sample", Hb, Hl, tol["path"])

    attempt("fwd-rev", fwd_rev)
    attempt("dense", dense)
    attempt("fd", fd)
    def jitted() -> None:
        g = jit(_api.jacrev(f))
        g(arr(rng.uniform(-1.0, 1.0, prog.n)))  # traced here, replayed below
        _close("jit(jacrev) replayed vs jacrev", g(x), _jac(), tol["path"])

    heavy = [("chunked", chunked), ("vmap", vmapped), ("jit", jitted)]
    if prog.batched:
        heavy.append(("batch_ndim", batched))
    if prog.order2:
        heavy.append(("hessian", hessian))
    for check, fn in (heavy if everything else [heavy[prog.seed % len(heavy)]]):
        attempt(check, fn)
    return ("fail" if fails else "ok"), fails


def _describe(e: BaseException) -> str:
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    frames = [fr for fr in traceback.extract_tb(e.__traceback__) if "xpdiff" in fr.filename]
    where = ""
    if frames and not isinstance(e, Mismatch):
        fr = frames[-1]
        where = f" (at {fr.filename.rsplit('xpdiff', 1)[-1].lstrip('/')}:{fr.lineno})"
    return f"{type(e).__name__}: {text[:300]}{where}"


@dataclass
class FuzzReport:
    """What :func:`run_fuzz` found."""

    seed: int
    n: int = 0
    ok: int = 0
    invalid: int = 0
    failures: list = field(default_factory=list)  # (program description, check, message)
    checks: Counter = field(default_factory=Counter)  # failing checks by name
    by_dtype: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        failed = len({d for d, _, _ in self.failures})
        lines = [f"fuzz: {self.n} programs from seed {self.seed} ({dict(self.by_dtype)}): "
                 f"{self.ok} pass, {failed} fail, {self.invalid} invalid "
                 f"(entries refused the drawn arguments) in {self.seconds:.1f} s"]
        if self.checks:
            lines.append("  failing checks: " + ", ".join(f"{k} {v}" for k, v in
                                                          sorted(self.checks.items())))
        for desc, check, msg in self.failures:
            seed = desc.split()[1]
            lines.append(f"  FAIL [{check}] {desc}\n       {msg}\n       replay: xpdiff check "
                         f"--fuzz 1 --seed {seed}")
        return "\n".join(lines)


def run_fuzz(n: int, seed: int = 0, *, backend: str | None = None, device: Any = None,
             dtype: str | None = None, select: list | None = None, everything: bool = False,
             progress: bool = True, stream: TextIO | None = None) -> FuzzReport:
    """Check ``n`` random programs over the op table (seeds ``seed .. seed + n - 1``).

    Args:
        n: the number of programs.
        seed: the seed of the first program.
        backend, device: where the arrays live (as for ``xpdiff check``).
        dtype: ``"float64"`` or ``"float32"``; ``None`` draws it per program.
        select: use only the op-table entries whose name contains one of these strings.
        everything: run every check on every program (default: the cheap ones and one
            of the costly ones, in turn).
        progress: print one character per program on ``stream`` (default stderr).

    Returns:
        A :class:`FuzzReport`; ``report.passed`` when no program failed.

    >>> report = run_fuzz(2, seed=0, progress=False)
    >>> report.n, report.passed
    (2, True)
    """
    name = _backend.default_backend() if backend is None else _backend.canonical_name(backend)
    bk = _backend.backend_namespace(name)
    dev = _backend.parse_device(name, device)
    if dtype not in (None, "float64", "float32"):
        raise ValueError(f"xpdiff check --fuzz: dtype must be float64 or float32, got {dtype!r}")
    ops = [op for op in optable.OPS if not select or any(s_ in op.name for s_ in select)]
    if not ops:
        raise ValueError(f"xpdiff check --fuzz: no op-table entry matches {select!r}")
    out = stream or sys.stderr
    report = FuzzReport(seed=seed)
    t0 = time.perf_counter()
    for i in range(n):
        prog = make_program(seed + i, ops, dtype)
        status, fails = check_program(prog, bk, dev, everything)
        report.n += 1
        report.by_dtype[prog.dtype] += 1
        if status == "ok":
            report.ok += 1
        elif status == "invalid":
            report.invalid += 1
        for check, msg in fails:
            report.failures.append((prog.describe(), check, msg))
            report.checks[check] += 1
        if progress:
            out.write({"ok": ".", "invalid": "i", "fail": "F"}[status])
            if (i + 1) % 80 == 0:
                out.write(f" {i + 1}\n")
            out.flush()
    if progress:
        out.write("\n")
    report.seconds = time.perf_counter() - t0
    return report
