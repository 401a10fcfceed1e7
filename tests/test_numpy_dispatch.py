"""Plain NumPy code on traced arrays: NumPy's dispatch protocols run the standard functions.

Table-driven like the op table: every ufunc and every NumPy function of the
translation tables has a case; each case checks the value against NumPy on plain
arrays and the derivatives against finite differences (``check_grads``).
"""

from __future__ import annotations

import numpy as np
import pytest

import xpdiff as xd
from xpdiff.backend import numpy_dispatch as nd
from xpdiff.testing import check_grads

RNG = np.random.default_rng(0)
X = RNG.uniform(0.2, 0.8, (3, 4))
V = RNG.uniform(0.2, 0.8, (4,))
SPD = X.T @ X + 4 * np.eye(4)

# ufuncs whose inputs must be shifted into their domain, and those without a derivative
SHIFT = {np.arccosh: 1.5}
NOT_DIFFERENTIABLE = {
    np.floor_divide, np.remainder, np.sign, np.signbit, np.floor, np.ceil, np.trunc, np.rint,
    np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal,
    np.logical_and, np.logical_or, np.logical_xor, np.logical_not, np.isnan, np.isinf,
    np.isfinite, np.nextafter, np.bitwise_and, np.bitwise_or, np.bitwise_xor, np.invert,
    np.left_shift, np.right_shift,
}
INTEGER = {np.bitwise_and, np.bitwise_or, np.bitwise_xor, np.invert, np.left_shift, np.right_shift}
BOOLEAN = {np.logical_and, np.logical_or, np.logical_xor, np.logical_not}


def _ufunc_case(uf):
    def f(x):
        a = x + SHIFT.get(uf, 0.0)
        b = 0.5 * x[::-1] + 0.3 if x.ndim == 1 else 0.5 * x + 0.3
        if uf in INTEGER:
            xp = xd.numpy if not hasattr(x, "__array_namespace__") else x.__array_namespace__()
            a, b = xp.astype(xp.floor(a * 10), xp.int64), xp.astype(xp.floor(b * 4), xp.int64)
        elif uf in BOOLEAN:
            a, b = a > 0.5, b > 0.5
        if uf is np.matmul:
            return np.matmul(a, np.reshape(b, (4, 1)) if a.ndim == 1 else SPD)
        if uf is getattr(np, "vecdot", None):
            return uf(np.reshape(a, (1, -1)), b)
        args = (a, b)[: uf.nin]
        if uf in (np.power,):
            args = (a, b)
        out = uf(*args)
        return out

    return f


UFUNC_CASES = [pytest.param(uf, id=uf.__name__) for uf in nd.UFUNCS]


@pytest.mark.parametrize("uf", UFUNC_CASES)
def test_ufunc(uf):
    f = _ufunc_case(uf)
    x = V.copy()
    want = f(x)
    # the value under a transformation equals NumPy's on plain arrays
    got, _ = xd.jvp(lambda x: f(x), (x,), (np.ones_like(x),))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if uf not in NOT_DIFFERENTIABLE:
        check_grads(f, (x,), order=2)


def _sym(a):  # symmetric-input rules are checked along symmetric directions
    return (a + np.matrix_transpose(a)) / 2


# (id, function of x, point)
FUNCTION_CASES = {
    "sum": (lambda x: np.sum(x, axis=0), X), "prod": (lambda x: np.prod(x, axis=1, keepdims=True), X),
    "mean": (lambda x: np.mean(x), X), "std": (lambda x: np.std(x, axis=0, ddof=1), X),
    "var": (lambda x: np.var(x, axis=(0, 1)), X), "max": (lambda x: np.max(x, axis=1), X),
    "amax": (lambda x: np.amax(x), X), "min": (lambda x: np.min(x, axis=0), X),
    "amin": (lambda x: np.amin(x, axis=1, keepdims=True), X),
    "all": (lambda x: x * np.all(x > 0.1, axis=0), X), "any": (lambda x: x * np.any(x > 0.7), X),
    "argmax": (lambda x: np.take(x, np.argmax(x)), X),
    "argmin": (lambda x: np.take_along_axis(x, np.argmin(x, axis=1, keepdims=True), axis=1), X),
    "cumsum": (lambda x: np.cumsum(x, axis=1), X), "cumprod": (lambda x: np.cumprod(x), X),
    "dot": (lambda x: np.dot(x, SPD), X), "inner": (lambda x: np.inner(x, x), X),
    "outer": (lambda x: np.outer(x, V), V), "tensordot": (lambda x: np.tensordot(x, SPD, axes=1), X),
    "concatenate": (lambda x: np.concatenate([x, 2 * x], axis=None), X),
    "stack": (lambda x: np.stack([x, x * x], axis=1), X),
    "hstack": (lambda x: np.hstack([x, x]), X), "vstack": (lambda x: np.vstack([V, x]), X),
    "atleast_1d": (lambda x: np.atleast_1d(np.sum(x)), X),
    "atleast_2d": (lambda x: np.atleast_2d(x), V), "atleast_3d": (lambda x: np.atleast_3d(x), X),
    "reshape": (lambda x: np.reshape(x, (2, 6)), X), "transpose": (lambda x: np.transpose(x), X),
    "swapaxes": (lambda x: np.swapaxes(x, 0, 1), X), "moveaxis": (lambda x: np.moveaxis(x, 0, -1), X),
    "squeeze": (lambda x: np.squeeze(np.reshape(x, (1, 3, 1, 4))), X),
    "expand_dims": (lambda x: np.expand_dims(x, (0, 3)), X),
    "broadcast_to": (lambda x: np.broadcast_to(x, (2, 3, 4)), X),
    "broadcast_arrays": (lambda x: np.broadcast_arrays(x, V)[1] * x, X),
    "where": (lambda x: np.where(x > 0.5, x, x ** 2), X), "clip": (lambda x: np.clip(x, 0.3, 0.6), X),
    "sort": (lambda x: np.sort(x, axis=None), X), "argsort": (lambda x: np.take(x, np.argsort(x[0])), X),
    "flip": (lambda x: np.flip(x), X), "roll": (lambda x: np.roll(x, 2, axis=1), X),
    "take": (lambda x: np.take(x, np.asarray([[0, 2], [1, 1]]), axis=1), X),
    "take_along_axis": (lambda x: np.take_along_axis(x, np.zeros((3, 1), dtype=np.int64), axis=1), X),
    "repeat": (lambda x: np.repeat(x, 2, axis=0), X), "tile": (lambda x: np.tile(x, (2, 1)), X),
    "tril": (lambda x: np.tril(x), X), "triu": (lambda x: np.triu(x, 1), X),
    "diff": (lambda x: np.diff(x, axis=0), X), "trace": (lambda x: np.trace(x), X),
    "diagonal": (lambda x: np.diagonal(x, 1), X),
    "zeros_like": (lambda x: x + np.zeros_like(x), X), "ones_like": (lambda x: x * np.ones_like(x), X),
    "empty_like": (lambda x: np.reshape(x, np.empty_like(x, shape=(12,)).shape), X),
    "full_like": (lambda x: x * np.full_like(x, 2.0), X), "copy": (lambda x: np.copy(x) * x, X),
    "real": (lambda x: np.real(x), X), "imag": (lambda x: x + np.imag(x), X),
    "round": (lambda x: x * np.round(x), X), "around": (lambda x: x * np.around(x), X),
    "nonzero": (lambda x: x[np.nonzero(x > 0.5)], X),
    "count_nonzero": (lambda x: x * np.count_nonzero(x > 0.5), X),
    "searchsorted": (lambda x: x * np.searchsorted(np.asarray([0.3, 0.6]), x), X),
    "meshgrid": (lambda x: np.meshgrid(x, V)[0], V),
    "shape": (lambda x: np.reshape(x, np.shape(x)[::-1]), X),
    "ndim": (lambda x: x * np.ndim(x), X), "size": (lambda x: x * np.size(x, 1), X),
    "astype": (lambda x: np.astype(x, np.float64), X),
    "matrix_transpose": (lambda x: np.matrix_transpose(x), X),
    "unstack": (lambda x: np.unstack(x)[1], X),
    "cumulative_sum": (lambda x: np.cumulative_sum(x, axis=0), X),
    "cumulative_prod": (lambda x: np.cumulative_prod(x, axis=1), X),
    "cross": (lambda x: np.cross(x[:, :3], V[:3]), X),
    "linalg.inv": (lambda x: np.linalg.inv(x), SPD), "linalg.det": (lambda x: np.linalg.det(x), SPD),
    "linalg.solve": (lambda x: np.linalg.solve(x, V), SPD),
    "linalg.slogdet": (lambda x: np.linalg.slogdet(x)[1], SPD),
    "linalg.eigh": (lambda x: np.linalg.eigh(_sym(x))[0], SPD),
    "linalg.eigvalsh": (lambda x: np.linalg.eigvalsh(_sym(x)), SPD),
    "linalg.pinv": (lambda x: np.linalg.pinv(x), X),
    "linalg.matrix_rank": (lambda x: x * np.linalg.matrix_rank(x), X),
    "linalg.matrix_power": (lambda x: np.linalg.matrix_power(x, 2), SPD),
    "linalg.norm": (lambda x: np.linalg.norm(x) + np.linalg.norm(x, axis=1)
                    + np.linalg.norm(x, 1, (0, 1)), X),
    "linalg.svd": (lambda x: np.linalg.svd(x, compute_uv=False), X),
    "linalg.qr": (lambda x: np.abs(np.linalg.qr(x)[1]), SPD),
    "linalg.cholesky": (lambda x: np.linalg.cholesky(_sym(x)), SPD),
    "linalg.outer": (lambda x: np.linalg.outer(x, V), V),
    "linalg.vector_norm": (lambda x: np.linalg.vector_norm(x, axis=0), X),
    "linalg.matrix_norm": (lambda x: np.linalg.matrix_norm(x), X),
    "linalg.svdvals": (lambda x: np.linalg.svdvals(x), X),
    "linalg.trace": (lambda x: np.linalg.trace(x), SPD),
    "linalg.diagonal": (lambda x: np.linalg.diagonal(x), SPD),
    "linalg.cross": (lambda x: np.linalg.cross(x[:, :3], V[:3]), X),
    "linalg.vecdot": (lambda x: np.linalg.vecdot(x, V), X),
    "linalg.tensordot": (lambda x: np.linalg.tensordot(x, V, axes=1), X),
    "linalg.matmul": (lambda x: np.linalg.matmul(x, SPD), X),
    "linalg.matrix_transpose": (lambda x: np.linalg.matrix_transpose(x), X),
}
NOT_DIFF_FUNCS = {"searchsorted", "argmax", "argmin", "argsort", "nonzero", "count_nonzero",
                  "linalg.matrix_rank", "all", "any", "round", "around", "imag"}


def _name(func):
    return nd._qualname(func)


def test_every_function_has_a_case():
    names = {_name(f) for f in nd.FUNCTIONS}
    assert names == set(FUNCTION_CASES), (names ^ set(FUNCTION_CASES))


@pytest.mark.parametrize("name", sorted(FUNCTION_CASES))
def test_function(name):
    f, x = FUNCTION_CASES[name]
    want = f(x.copy())
    got, _ = xd.jvp(f, (x.copy(),), (np.ones_like(x),))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    order = 1 if name in NOT_DIFF_FUNCS or name.startswith("linalg.") else 2
    check_grads(f, (x.copy(),), order=order)


def test_plain_numpy_under_batch_ndim_and_vmap():
    W = RNG.standard_normal((4, 5))

    def mlp(x):
        return np.sum(np.tanh(np.matmul(x, W)), axis=-1)

    x = RNG.standard_normal((6, 4))
    J = xd.jacobian(mlp, batch_ndim=1)(x)
    ref = np.stack([xd.jacobian(mlp)(x[i]) for i in range(6)])
    np.testing.assert_allclose(J, ref, rtol=1e-12)
    np.testing.assert_allclose(xd.vmap(xd.grad(lambda v: np.sum(np.exp(v))))(x), np.exp(x))
    with pytest.raises(xd.MixingError):
        xd.jacobian(lambda x: np.sum(x, axis=0), batch_ndim=1)(x)


def test_numpy_scalars_and_arrays_mix_with_traced_arrays():
    x = V.copy()
    g = xd.grad(lambda x: np.sum(np.float64(2.0) * x + np.ones(4) * x))(x)
    np.testing.assert_allclose(g, np.full(4, 3.0))
    g = xd.grad(lambda x: np.sum(np.arange(4.0) - x))(x)
    np.testing.assert_allclose(g, -np.ones(4))


def test_where_with_two_python_scalars_and_a_numeric_condition():
    """SciPy's distance_transform_edt: ``np.where(input, 1, 0)`` with an integer input
    (its truth is read, as NumPy reads it) and two Python scalars (NumPy's dtype)."""
    x = np.asarray([0.0, 2.0, -1.5])

    def f(x):
        ints = np.where(np.astype(x, np.int8), 1, 0)
        assert ints.dtype == np.int64
        return x * ints + np.where(x > 1.0, 2.5, 1)

    np.testing.assert_array_equal(f(x), [1.0, 4.5, -0.5])
    got, t = xd.jvp(f, (x,), (np.ones(3),))
    np.testing.assert_array_equal(got, [1.0, 4.5, -0.5])
    np.testing.assert_array_equal(t, [0.0, 1.0, 1.0])


@pytest.mark.parametrize("call, match", [
    (lambda x: np.einsum("i,i", x, x), r"numpy\.einsum .*xp\.matmul, xp\.tensordot or xp\.vecdot"),
    (lambda x: np.nansum(x), r"numpy\.nansum .*xp\.sum\(xp\.where\(xp\.isnan"),
    (lambda x: np.median(x), r"numpy\.median"),
    (lambda x: np.sum(x, out=np.empty(())), r"numpy\.sum: the argument out="),
    (lambda x: np.add.outer(x, x), r"numpy\.add\.outer .*xp\.linalg\.outer"),
    (lambda x: np.exp(x, out=np.empty(4)), r"numpy\.exp: writing into a NumPy array"),
    (lambda x: np.std(x, where=x > 0), r"numpy\.std: the argument where="),
])
def test_uncovered_numpy_calls_name_the_function_and_the_fix(call, match):
    with pytest.raises(TypeError, match=match):
        xd.grad(lambda x: xd.numpy.sum(call(x)))(V.copy())


def test_inplace_write_into_numpy_array_names_the_fix():
    def f(x):
        a = np.zeros(4)
        a += x
        return np.sum(a)

    with pytest.raises(TypeError, match=r"write `a = a \+ x` instead"):
        xd.grad(f)(V.copy())


def test_the_docs_list_exactly_the_covered_functions():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "numpy.md").read_text()
    for func in nd.FUNCTIONS:
        assert f"`numpy.{_name(func)}`" in text, _name(func)
    for uf, std in nd.UFUNCS.items():
        assert f"| `{uf.__name__}` | `{std}` |" in text or f"`{uf.__name__}` | `{std}`" in text, uf
