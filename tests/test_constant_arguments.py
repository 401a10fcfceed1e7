"""Array arguments that are not differentiated enter the transformation as constants:
every array argument answers with xpdiff's namespace (what SciPy, scikit-learn and
array-api-extra ask first), and no derivative flows through them."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xpdiff as xd

rng = np.random.default_rng(0)
X, y, w = rng.standard_normal((6, 3)), rng.standard_normal(6), rng.standard_normal(3)
W = rng.standard_normal((3, 2))


def loss(w, X, y):
    xp = array_api_compat.array_namespace(X, w)  # would raise "Multiple namespaces" on raw X
    assert X.__array_namespace__() is xp  # the data answers with xpdiff's namespace too
    r = X @ w - y
    return xp.sum(r * r)


def _ref_grad(w):
    return 2 * X.T @ (X @ w - y)


@pytest.mark.parametrize("transform", [
    lambda: xd.grad(loss)(w, X, y),
    lambda: xd.value_and_grad(loss)(w, X, y)[1],
    lambda: xd.jacrev(loss)(w, X, y),
    lambda: xd.jacfwd(loss)(w, X, y),
    lambda: xd.jacobian(loss)(w, X, y),
    lambda: xd.vjp(loss, w, X, y)[1](np.ones(()))[0],
])
def test_data_arguments_answer_with_xpdiff_namespace(transform):
    np.testing.assert_allclose(transform(), _ref_grad(w), rtol=1e-12)


def test_hessian_and_vmap_and_batch_ndim():
    np.testing.assert_allclose(xd.hessian(loss)(w, X, y), 2 * X.T @ X, rtol=1e-12)

    def layer(x, W):
        xp = array_api_compat.array_namespace(x, W)
        return xp.tanh(x @ W)

    out = xd.vmap(layer, in_axes=(0, None))(X, W)
    np.testing.assert_allclose(out, np.tanh(X @ W), rtol=1e-12)
    J = xd.jacobian(layer, batch_ndim=1, data_argnums=0)(X, W)
    d = 1 - np.tanh(X @ W) ** 2
    np.testing.assert_allclose(J, d[:, :, None] * W.T[None], rtol=1e-12)
    Jw = xd.jacobian(layer, argnums=1, batch_ndim=1, data_argnums=0)(X, W)
    assert Jw.shape == (6, 2, 3, 2)


def test_constants_carry_no_derivative_and_come_back_as_plain_arrays():
    (val, aux), g = xd.value_and_grad(lambda w, X: (xd.numpy.sum(X @ w), X), has_aux=True)(w, X)
    assert type(aux) is np.ndarray and aux is not None
    np.testing.assert_array_equal(aux, X)
    # an in-place update of the constant inside f does not reach the caller's array
    X0 = X.copy()

    def f(w, X):
        X[0, 0] = 100.0
        return xd.numpy.sum(X @ w)

    xd.grad(f)(w, X0)
    np.testing.assert_array_equal(X0, X)


def test_closed_over_arrays_stay_plain_constants():
    # not an argument: the function sees the caller's array as it is (docs: which namespace)
    seen = []
    xd.grad(lambda w: (seen.append(type(X)), xd.numpy.sum(X @ w))[1])(w)
    assert seen == [np.ndarray]
