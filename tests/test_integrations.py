"""Differentiating real array-API codebases, unchanged: SciPy, scikit-learn, array-api-extra.

SciPy and scikit-learn dispatch on ``array_namespace(x)`` only with
``SCIPY_ARRAY_API=1`` set before SciPy is imported, so their cases run once, in a
subprocess (this file run as a script); array-api-extra runs in process.  Every
case is ``xd.grad`` of a scalar made from the library's output, compared with
central finite differences of the same library on NumPy.  Cases that fail for a
verified reason are ``xfail(strict=True)``: when the gap is closed they fail,
and the mark must go.  docs/integrations.md has the table.

Run ``SCIPY_ARRAY_API=1 python tests/test_integrations.py --compare`` for the
side-by-side table with ``jax.grad`` and ``torch.func.grad``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback

import numpy as np
import pytest

# --- the cases (shared by the pytest side and the subprocess) -----------------------------

RNG = np.random.default_rng(0)
X35 = RNG.standard_normal((3, 5))
POS35 = np.abs(RNG.standard_normal((3, 5))) + 0.5
X83 = RNG.standard_normal((8, 3))
POS83 = np.abs(X83) + 0.5
Y8 = RNG.standard_normal(8)
V5 = RNG.standard_normal(5)
ROTVEC = np.array([0.3, -0.2, 0.5])
QUAT = np.array([0.2, -0.4, 0.1, 0.9])
LABELS = np.array([0, 1] * 4)
SIG40 = RNG.standard_normal(40)
KERNEL7 = RNG.standard_normal(7)


def _ns(a):
    """The array namespace of ``a``, as the libraries themselves ask for it."""
    import array_api_compat

    return array_api_compat.array_namespace(a)


def _const(like, value):
    """``value`` as an array of ``like``'s namespace, dtype and device (JAX tracers have no
    ``.device``: ask array_api_compat)."""
    import array_api_compat

    return _ns(like).asarray(value, dtype=like.dtype, device=array_api_compat.device(like))


def _weighted(out, seed=1):
    """A scalar from an output: ``sum(out * w)`` with fixed weights (every entry matters)."""
    return _ns(out).sum(out * _const(out, np.random.default_rng(seed).standard_normal(tuple(out.shape))))


def _scipy_cases():
    from scipy import integrate, optimize, signal, special, stats
    from scipy.spatial.transform import Rotation

    return {
        "scipy.special.logsumexp": (lambda a: _weighted(special.logsumexp(a, axis=-1)), X35),
        "scipy.special.softmax": (lambda a: _weighted(special.softmax(a, axis=-1)), X35),
        "scipy.special.log_softmax": (lambda a: _weighted(special.log_softmax(a, axis=-1)), X35),
        "scipy.special.xlogy": (lambda a: _weighted(special.xlogy(a, a + 1)), POS35),
        "scipy.special.expit": (lambda a: _weighted(special.expit(a)), X35),
        "scipy.special.erf": (lambda a: _weighted(special.erf(a)), X35),
        "scipy.special.gammaln": (lambda a: _weighted(special.gammaln(a)), POS35),
        # SciPy passes the order as an array (integer orders, broadcast against x)
        "scipy.special.polygamma": (lambda a: _weighted(special.polygamma(
            _ns(a).asarray(np.array([[0], [1], [3]])), a)), POS35),
        "scipy.stats.zscore": (lambda a: _weighted(stats.zscore(a, axis=-1)), X35),
        "scipy.stats.skew": (lambda a: _weighted(stats.skew(a, axis=-1)), X35),
        "scipy.stats.kurtosis": (lambda a: _weighted(stats.kurtosis(a, axis=-1)), X35),
        "scipy.stats.gmean": (lambda a: _weighted(stats.gmean(a, axis=-1)), POS35),
        "scipy.stats.hmean": (lambda a: _weighted(stats.hmean(a, axis=-1)), POS35),
        "scipy.stats.moment": (lambda a: _weighted(stats.moment(a, order=3, axis=-1)), X35),
        "scipy.stats.sem": (lambda a: _weighted(stats.sem(a, axis=-1)), X35),
        "scipy.stats.variation": (lambda a: _weighted(stats.variation(a, axis=-1)), POS35),
        "scipy.stats.entropy": (lambda a: _weighted(stats.entropy(a, axis=-1)), POS35),
        "scipy.integrate.trapezoid": (lambda a: _weighted(integrate.trapezoid(a * a, axis=-1)), X35),
        "scipy.integrate.cumulative_trapezoid":
            (lambda a: _weighted(integrate.cumulative_trapezoid(a * a, axis=-1)), X35),
        "scipy.integrate.simpson": (lambda a: _weighted(integrate.simpson(a * a, axis=-1)), X35),
        "scipy.integrate.cumulative_simpson":
            (lambda a: _weighted(integrate.cumulative_simpson(a * a, axis=-1)), X35),
        # overlap-add writes each block's result through a slice of the output (a view)
        "scipy.signal.oaconvolve":
            (lambda a: _weighted(signal.oaconvolve(a, _const(a, KERNEL7), mode="full")), SIG40),
        "scipy.optimize.rosen": (lambda a: optimize.rosen(a), V5),
        "scipy.optimize.rosen_der": (lambda a: _weighted(optimize.rosen_der(a)), V5),
        "scipy.spatial.transform.Rotation.from_rotvec.as_matrix":
            (lambda a: _weighted(Rotation.from_rotvec(a).as_matrix()), ROTVEC),
        "scipy.spatial.transform.Rotation.from_quat.apply":
            (lambda a: _weighted(Rotation.from_quat(a).apply(_const(a, X83[:2]))),
             QUAT),
    }


def _sklearn_cases():
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error, r2_score
    from sklearn.metrics.pairwise import euclidean_distances, polynomial_kernel, rbf_kernel
    from sklearn.preprocessing import MinMaxScaler, Normalizer, StandardScaler

    def y8(a):
        return _const(a, Y8)

    def x83(a):
        return _const(a, X83)

    return {
        "sklearn Ridge(solver='svd').fit(X, y).coef_ wrt X":
            (lambda a: _weighted(Ridge(alpha=0.5, solver="svd").fit(a, y8(a)).coef_), X83),
        "sklearn Ridge(solver='svd').fit(X, y).coef_ wrt y":
            (lambda b: _weighted(Ridge(alpha=0.5, solver="svd").fit(x83(b), b).coef_), Y8),
        "sklearn.metrics.pairwise.rbf_kernel": (lambda a: _weighted(rbf_kernel(a, gamma=0.3)), X83),
        "sklearn.metrics.pairwise.euclidean_distances":
            (lambda a: _weighted(euclidean_distances(a, x83(a)[:3] + 0.1)), X83),
        "sklearn.metrics.pairwise.polynomial_kernel":
            (lambda a: _weighted(polynomial_kernel(a, degree=2)), X83),
        "sklearn.metrics.mean_squared_error": (lambda b: mean_squared_error(y8(b) * 0.5, b), Y8),
        "sklearn.metrics.r2_score": (lambda b: r2_score(y8(b), b), Y8 * 0.3),
        "sklearn StandardScaler": (lambda a: _weighted(StandardScaler().fit_transform(a)), X83),
        "sklearn MinMaxScaler": (lambda a: _weighted(MinMaxScaler().fit_transform(a)), X83),
        "sklearn Normalizer": (lambda a: _weighted(Normalizer().fit_transform(a)), X83),
        "sklearn PCA(svd_solver='full')":
            (lambda a: _weighted(PCA(n_components=2, svd_solver="full").fit_transform(a) ** 2), X83),
        "sklearn LinearDiscriminantAnalysis(solver='svd').coef_":
            (lambda a: _weighted(LinearDiscriminantAnalysis(solver="svd").fit(
                a, _ns(a).asarray(LABELS)).coef_), X83),
    }


def _xpx_cases():
    import array_api_extra as xpx

    def xp_log(a):
        return _ns(a).log(a)

    def mask_set(a):
        xp = _ns(a)
        return _weighted(xpx.at(a)[a > 0].set(xp.sin(a)[a > 0]))

    return {
        "array_api_extra.cov": (lambda a: _weighted(xpx.cov(a)), X83),
        "array_api_extra.kron": (lambda a: _weighted(xpx.kron(a[:3, :], a[3:5, :])), X83),
        "array_api_extra.at(...).set (slice)":
            (lambda a: _weighted(xpx.at(a)[1:3].set(a[0:2] * 2.0) ** 2), X83),
        "array_api_extra.at(...).add (slice)":
            (lambda a: _weighted(xpx.at(a, (slice(None), 0)).add(a[:, 1]) ** 2), X83),
        "array_api_extra.at(...).set (boolean mask)": (mask_set, X83),
        "array_api_extra.sinc": (lambda a: _weighted(xpx.sinc(a)), X83),
        "array_api_extra.pad": (lambda a: _weighted(xpx.pad(a, 2) ** 2), X83),
        "array_api_extra.create_diagonal": (lambda a: _weighted(xpx.create_diagonal(a[0])), X83),
        "array_api_extra.nanmean": (lambda a: _weighted(xpx.nanmean(a * a, axis=0)), X83),
        "array_api_extra.nan_to_num": (lambda a: _weighted(xpx.nan_to_num(xp_log(a))), POS83),
        "array_api_extra.atleast_nd": (lambda a: _weighted(xpx.atleast_nd(a[0], ndim=3) ** 3), X83),
        "array_api_extra.apply_where":
            (lambda a: _weighted(xpx.apply_where(a > 0, a, lambda v: _ns(v).sqrt(v),
                                                 fill_value=0.0)), X83),
    }


def _eager_cases():
    """The eager API through SciPy: ``y = f(DiffArray)``, ``J = y.to(x, jacobian=True)``;
    the value compared is ``sum(w * J)`` and the gradient ``J.to(x, cotangent=w)``."""
    from scipy import special

    import xpdiff as xd

    def case(fn, batch_ndim):
        def jacobian(a):
            x = xd.DiffArray(a, batch_ndim=batch_ndim)
            return x, fn(x).to(x, jacobian=True)

        def value(a):
            return _weighted(jacobian(a)[1].value)

        def grad(a):
            x, J = jacobian(a)
            w = _const(J, np.random.default_rng(1).standard_normal(tuple(J.shape)))
            return J.to(x, cotangent=w).value

        return (value, grad)

    return {
        "DiffArray through scipy.special.softmax (Jacobian, then its VJP)":
            (case(lambda x: special.softmax(x, axis=-1), 0), X35[0]),
        "DiffArray(batch_ndim=1) through scipy.special.logsumexp (per-sample Jacobians, then VJP)":
            (case(lambda x: special.logsumexp(x, axis=-1, keepdims=True), 1), X35),
    }


# --- running one case ---------------------------------------------------------------------

def _fd_grad(f, x0, eps=1e-6):
    g = np.zeros_like(x0)
    for i in np.ndindex(*x0.shape):
        e = np.zeros_like(x0)
        e[i] = eps
        g[i] = (float(np.asarray(f(x0 + e))) - float(np.asarray(f(x0 - e)))) / (2 * eps)
    return g


def _xpdiff_grad(f, x0):
    import xpdiff as xd

    if isinstance(f, tuple):  # eager: the function computes its own gradient
        return np.asarray(f[1](x0))
    return np.asarray(xd.grad(f)(x0))


def _eager_grad(f, x0):
    import xpdiff as xd

    x = xd.DiffArray(x0)
    return np.asarray(f(x).to(x).value)


def _jax_grad(f, x0):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    return np.asarray(jax.grad(f)(jnp.asarray(x0)))


def _torch_grad(f, x0):
    import torch

    return torch.func.grad(f)(torch.asarray(x0)).detach().numpy()


ENGINES = {"xpdiff": _xpdiff_grad, "eager": _eager_grad, "jax": _jax_grad, "torch": _torch_grad}


def _run_case(f, x0, engine):
    """``{"error": str | None, "err": relative max error vs finite differences}``."""
    try:
        g = ENGINES[engine](f, x0)
    except Exception as e:  # the result records why a library's code could not be differentiated
        last = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{os.path.basename(last.filename)}:{last.lineno}"
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]} ({where})", "err": None}
    ref = _fd_grad(f[0] if isinstance(f, tuple) else f, x0)
    err = float(np.max(np.abs(g - ref)) / max(1.0, float(np.max(np.abs(ref)))))
    return {"error": None, "err": err}


def _cases(groups):
    out = {}
    for group in groups:
        try:
            out.update(group())
        except ImportError as e:
            out[f"<{group.__name__}>"] = ("missing", str(e))
    return out


def _main(argv):
    """Subprocess entry: run the SciPy/scikit-learn cases, print JSON (or the comparison)."""
    if os.environ.get("SCIPY_ARRAY_API") != "1":
        raise SystemExit("run with SCIPY_ARRAY_API=1 (SciPy reads it when it is imported)")
    try:
        import sklearn

        sklearn.set_config(array_api_dispatch=True, assume_finite=True)
    except ImportError:
        pass
    engines = ["xpdiff", "eager", "jax", "torch"] if "--compare" in argv else ["xpdiff", "eager"]
    groups = [_scipy_cases, _sklearn_cases, _xpx_cases, _eager_cases] if "--compare" in argv \
        else [_scipy_cases, _sklearn_cases, _eager_cases]
    results = {}
    for name, case in _cases(groups).items():
        if case[0] == "missing":
            results[name] = {"missing": case[1]}
            continue
        f, x0 = case
        results[name] = {e: _run_case(f, x0, e) for e in engines
                         if not (isinstance(f, tuple) and e != "xpdiff")}  # eager already
    if "--compare" in argv:
        print("| function | xd.grad | DiffArray | jax.grad | torch.func.grad |\n|---|---|---|---|---|")
        for name, r in results.items():
            cells = []
            for e in engines:
                c = r.get(e)
                if c is None:
                    cells.append("-")
                elif c["error"] is not None:
                    cells.append(f"fails: {c['error']}")
                else:
                    ok = c["err"] < TOL  # NaN compares False: a NaN gradient is wrong
                    cells.append(f"{'ok' if ok else 'WRONG'} {c['err']:.0e}")
            print(f"| {name} | " + " | ".join(cells) + " |")
    else:
        print(json.dumps(results))


# --- the pytest side ----------------------------------------------------------------------

TOL = 1e-6


class IntegrationFailure(AssertionError):
    """xpdiff could not differentiate the library's function (the message says why)."""


def _namespace_is_usable() -> bool:
    """``array_api_compat.array_namespace`` hashes namespaces and reads ``__name__``."""
    import xpdiff as xd

    ns = xd.numpy
    try:
        hash(ns)
    except TypeError:
        return False
    return isinstance(getattr(ns, "__name__", None), str)


def _namespace_mark():
    usable = _namespace_is_usable()
    return pytest.mark.xfail(
        not usable, strict=True, raises=(IntegrationFailure, TypeError, AttributeError),
        reason="xpdiff's Namespace is unhashable and has no __name__: array_api_compat."
               "array_namespace puts namespaces in a set and SciPy's is_*_namespace read "
               "xp.__name__ (fix requested in xpdiff/namespaces/__init__.py)")


def _gap(reason):
    return pytest.mark.xfail(strict=True, raises=IntegrationFailure, reason=reason)


NP_ASARRAY = "reaches compiled code through np.asarray (no array-API path in SciPy)"
FLOAT_RESULT = "returns a Python float (float() of the result): no array to differentiate"

KNOWN_GAPS = {
    "scipy.integrate.simpson": NP_ASARRAY + " (simpson has no array-API path: np.asarray(y))",
    "sklearn.metrics.mean_squared_error": FLOAT_RESULT,
    "sklearn.metrics.r2_score": FLOAT_RESULT,
}


# only with the eager API (xd.DiffArray): on top of KNOWN_GAPS
INPUT_WRITE = ("writes into its input (xpx.at(x) with copy=None), which is refused on a DiffArray "
               "made by xd.DiffArray(...), as PyTorch refuses it on a leaf (pass copy=True)")
EAGER_GAPS = {"array_api_extra.at(...).set (slice)": INPUT_WRITE,
              "array_api_extra.at(...).add (slice)": INPUT_WRITE,
              "array_api_extra.at(...).set (boolean mask)": INPUT_WRITE}
EAGER_NAMES = ("DiffArray through", "DiffArray(batch_ndim=1) through")  # eager cases themselves


def _params(names):
    """``(name, engine)`` pairs: ``xd.grad`` and the eager ``DiffArray(...).to()``."""
    out = []
    for engine in ("xpdiff", "eager"):
        for n in names:
            if engine == "eager" and n.startswith(EAGER_NAMES):
                continue
            gap = KNOWN_GAPS.get(n) or (EAGER_GAPS.get(n) if engine == "eager" else None)
            marks = [_namespace_mark()] + ([_gap(gap)] if gap else [])
            label = "xd.grad" if engine == "xpdiff" else "DiffArray"
            out.append(pytest.param(n, engine, marks=marks, id=f"{label}: {n}"))
    return out


def _check(name, r):
    if r["error"] is not None:
        raise IntegrationFailure(f"{name}: {r['error']}")
    if name in KNOWN_GAPS and not r["err"] < TOL:  # a known wrong value (e.g. NaN), not a crash
        raise IntegrationFailure(f"{name}: gradient differs from finite differences by {r['err']}")
    assert r["err"] < TOL, f"{name}: gradient differs from finite differences by {r['err']:.1e}"


@pytest.fixture(scope="module")
def subprocess_results():
    pytest.importorskip("scipy")
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the SciPy/scikit-learn runner failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


SCIPY_NAMES = ["scipy.special.logsumexp", "scipy.special.softmax", "scipy.special.log_softmax",
               "scipy.special.xlogy", "scipy.special.expit", "scipy.special.erf",
               "scipy.special.gammaln", "scipy.special.polygamma", "scipy.stats.zscore", "scipy.stats.skew",
               "scipy.stats.kurtosis", "scipy.stats.gmean", "scipy.stats.hmean",
               "scipy.stats.moment", "scipy.stats.sem", "scipy.stats.variation",
               "scipy.stats.entropy", "scipy.integrate.trapezoid",
               "scipy.integrate.cumulative_trapezoid", "scipy.integrate.simpson",
               "scipy.integrate.cumulative_simpson", "scipy.signal.oaconvolve", "scipy.optimize.rosen",
               "scipy.optimize.rosen_der", "scipy.spatial.transform.Rotation.from_rotvec.as_matrix",
               "scipy.spatial.transform.Rotation.from_quat.apply",
               "DiffArray through scipy.special.softmax (Jacobian, then its VJP)",
               "DiffArray(batch_ndim=1) through scipy.special.logsumexp (per-sample Jacobians, then VJP)"]
SKLEARN_NAMES = ["sklearn Ridge(solver='svd').fit(X, y).coef_ wrt X",
                 "sklearn Ridge(solver='svd').fit(X, y).coef_ wrt y",
                 "sklearn.metrics.pairwise.rbf_kernel", "sklearn.metrics.pairwise.euclidean_distances",
                 "sklearn.metrics.pairwise.polynomial_kernel", "sklearn.metrics.mean_squared_error",
                 "sklearn.metrics.r2_score", "sklearn StandardScaler", "sklearn MinMaxScaler",
                 "sklearn Normalizer", "sklearn PCA(svd_solver='full')",
                 "sklearn LinearDiscriminantAnalysis(solver='svd').coef_"]


@pytest.mark.parametrize(("name", "engine"), _params(SCIPY_NAMES))
def test_scipy(name, engine, subprocess_results):
    if "<_scipy_cases>" in subprocess_results:
        pytest.skip(f"SciPy is not installed: {subprocess_results['<_scipy_cases>']}")
    _check(name, subprocess_results[name][engine])


@pytest.mark.parametrize(("name", "engine"), _params(SKLEARN_NAMES))
def test_sklearn(name, engine, subprocess_results):
    if "<_sklearn_cases>" in subprocess_results:
        pytest.skip(f"scikit-learn is not installed: {subprocess_results['<_sklearn_cases>']}")
    _check(name, subprocess_results[name][engine])


XPX_NAMES = ["array_api_extra.cov", "array_api_extra.kron", "array_api_extra.at(...).set (slice)",
             "array_api_extra.at(...).add (slice)", "array_api_extra.at(...).set (boolean mask)",
             "array_api_extra.sinc", "array_api_extra.pad", "array_api_extra.create_diagonal",
             "array_api_extra.nanmean", "array_api_extra.nan_to_num", "array_api_extra.atleast_nd",
             "array_api_extra.apply_where"]


@pytest.mark.parametrize(("name", "engine"), _params(XPX_NAMES))
def test_array_api_extra(name, engine):
    pytest.importorskip("array_api_extra")
    f, x0 = _xpx_cases()[name]
    _check(name, _run_case(f, x0, engine))


def test_case_lists_are_complete(subprocess_results):
    """Every case the runner defines is tested (and nothing tested is undefined)."""
    if any(k.startswith("<") for k in subprocess_results):
        pytest.skip(f"a library is missing: {sorted(subprocess_results)}")
    assert set(SCIPY_NAMES) | set(SKLEARN_NAMES) == set(subprocess_results)
    pytest.importorskip("array_api_extra")
    assert set(XPX_NAMES) == set(_xpx_cases())
    assert set(KNOWN_GAPS) | set(EAGER_GAPS) <= set(SCIPY_NAMES) | set(SKLEARN_NAMES) | set(XPX_NAMES)


def test_the_docs_table_has_every_case():
    """docs/integrations.md has a row for each case the runner defines (a row may add a note
    in parentheses to the name), and its totals count every library function."""
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "integrations.md")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    cells = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")}
    names = SCIPY_NAMES + SKLEARN_NAMES + XPX_NAMES
    missing = [n for n in names if not any(c == n or c.startswith(n + " (") for c in cells)]
    assert missing == [], f"add rows to the table of docs/integrations.md for {missing}"
    n_library = len([n for n in names if not n.startswith(EAGER_NAMES)])
    assert f"Totals over the {n_library} library functions" in " ".join(text.split())


@pytest.mark.parametrize("make", ["tracer", "DiffArray"])
@pytest.mark.xfail(not _namespace_is_usable(), strict=True, raises=(TypeError, AttributeError),
                   reason="xpdiff's Namespace is unhashable and has no __name__ (array_api_compat "
                          "puts namespaces in a set and reads xp.__name__)")
def test_array_namespace_of_traced_arrays_is_xpdiff(make):
    """Libraries find xpdiff through ``x.__array_namespace__()`` (array_api_compat's entry point)."""
    import array_api_compat

    import xpdiff as xd

    seen = []
    if make == "DiffArray":
        x = xd.DiffArray(np.ones(2))
        seen.append(array_api_compat.array_namespace(x, x * 2))
        assert seen[0] is x.__array_namespace__()  # xpdiff's, with eager constants
        assert isinstance(seen[0].zeros(2), xd.DiffArray)
    else:
        xd.grad(lambda v: seen.append(array_api_compat.array_namespace(v, v * 2)) or
                xd.numpy.sum(v))(np.ones(2))
        assert seen[0] is xd.numpy


if __name__ == "__main__":
    _main(sys.argv[1:])
