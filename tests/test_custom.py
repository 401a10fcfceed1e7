"""custom_jvp / custom_vjp: shared (unmapped) arguments under batch_ndim."""

import numpy as np

import xpdiff as xd

xp = xd.numpy


def rng():
    return np.random.default_rng(0)


# --- shared (unmapped) arguments of a custom_vjp under batch_ndim --------------------------

def test_custom_vjp_with_a_shared_argument_under_batch_ndim():
    # the residual w (no data dims) used to be lifted as if its dims were data dims
    @xd.custom_vjp
    def lin(x, w):
        return x * w

    lin.defvjp(lambda x, w: (x * w, (x, w)), lambda res, g: (g * res[1], g * res[0]))
    x = rng().standard_normal((4, 3))
    w = np.arange(1.0, 4.0)
    per_w = np.stack([np.diag(v) for v in x])
    per_x = np.broadcast_to(np.diag(w), (4, 3, 3))
    for mode in ("fwd", "rev"):
        J = xd.jacobian(lambda w, x: lin(x, w), batch_ndim=1, mode=mode, data_argnums=1)(w, x)
        np.testing.assert_allclose(J, per_w)
        np.testing.assert_allclose(xd.jacobian(lin, batch_ndim=1, mode=mode)(x, w), per_x)
    xa, wa = xd.DiffArray(x, batch_ndim=1), xd.DiffArray(w)
    np.testing.assert_allclose(lin(xa, wa).to(wa, jacobian=True).value, per_w)
    np.testing.assert_allclose(lin(xa, wa).to(xa).value, np.broadcast_to(w, x.shape))
