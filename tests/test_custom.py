"""custom_jvp / custom_vjp: what the user's rules return is checked in every mode; shared
(unmapped) arguments under batch_ndim."""

import numpy as np
import pytest

import xpdiff as xd

xp = xd.numpy


def rng():
    return np.random.default_rng(0)


X = rng().standard_normal(3)
XB = rng().standard_normal((2, 3))


def _eager(f, x, k=0):
    a = xd.DiffArray(x, batch_ndim=k)
    return f(a).to(a, jacobian=True).value


# every way a custom function of x (shape (3,), output (3,)) is differentiated
MODES = {
    "grad": lambda f: xd.grad(lambda x: xp.sum(f(x)))(X),
    "jvp": lambda f: xd.jvp(f, (X,), (X,)),
    "vjp": lambda f: xd.vjp(f, X)[1](X),
    "jacfwd": lambda f: xd.jacfwd(f)(X),
    "jacrev": lambda f: xd.jacrev(f)(X),
    "jacobian": lambda f: xd.jacobian(f)(X),  # mode="auto" picks forward mode here
    "jacobian(rev)": lambda f: xd.jacobian(f, mode="rev")(X),
    "hessian": lambda f: xd.hessian(lambda x: xp.sum(f(x)))(X),
    "vmap(grad)": lambda f: xd.vmap(xd.grad(lambda x: xp.sum(f(x))))(XB),
    "grad(vmap)": lambda f: xd.grad(lambda x: xp.sum(xd.vmap(f)(x)))(XB),
    "jacfwd(batch_ndim)": lambda f: xd.jacfwd(f, batch_ndim=1)(XB),
    "jacrev(batch_ndim)": lambda f: xd.jacrev(f, batch_ndim=1)(XB),
    "hessian(batch_ndim)": lambda f: xd.hessian(lambda x: xp.sum(f(x), axis=-1), batch_ndim=1)(XB),
    "DiffArray": lambda f: _eager(f, X),
    "DiffArray(batch_ndim)": lambda f: _eager(f, XB, k=1),
}
# custom_vjp: forward mode differentiates the function itself (the rules are not used)
VJP_MODES = [m for m in MODES if m not in ("jvp", "jacfwd", "jacobian", "jacfwd(batch_ndim)")]


def _vjp_with(bwd, fwd=None):
    @xd.custom_vjp
    def f(x):
        return xp.sin(x)

    f.defvjp(fwd or (lambda x: (xp.sin(x), (x,))), bwd)
    return f


def _jvp_with(rule):
    @xd.custom_jvp
    def f(x):
        return xp.sin(x)

    f.defjvp(rule)
    return f


def _good_bwd(res, g):
    return (g * xp.cos(res[0]),)


def _good_rule(p, t):
    return xp.sin(p[0]), xp.cos(p[0]) * t[0]


def _same_as_sin(mode, f):
    got, want = MODES[mode](f), MODES[mode](xp.sin)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", VJP_MODES)
def test_a_correct_custom_vjp_in_every_mode(mode):
    f = _vjp_with(_good_bwd)
    _same_as_sin(mode, f)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_correct_custom_jvp_in_every_mode(mode):
    f = _jvp_with(_good_rule)
    _same_as_sin(mode, f)


BAD_BWD = {
    # (the rule, a piece of the message)
    "too many": (lambda res, g: (g, g), r"returned 2 cotangent\(s\) for 1 argument"),
    "not a tuple": (lambda res, g: g * 2, r"returned an array of shape .*even for one argument"),
    "wrong shape": (lambda res, g: (g[..., :2],),
                    r"cotangent of shape \((2, )?2,?\) and dtype float64 for x, which has shape "
                    r"\((2, )?3,?\)"),
    "wrong dtype": (lambda res, g: (xp.astype(g, xp.float32),), r"dtype float32 for x, which has"),
    "not an array": (lambda res, g: (1.0,), r"returned a cotangent of a float for x"),
}


@pytest.mark.parametrize("mode", VJP_MODES)
@pytest.mark.parametrize("bad", list(BAD_BWD))
def test_a_wrong_bwd_is_named_in_every_mode(mode, bad):
    bwd, msg = BAD_BWD[bad]
    with pytest.raises(xd.CustomRuleError, match=r"custom_vjp f: its bwd rule .*" + msg):
        MODES[mode](_vjp_with(bwd))


BAD_RULE = {
    "wrong shape": (lambda p, t: (xp.sin(p[0]), t[0][..., :2]),
                    r"tangent of shape \((2, )?2,?\) and dtype float64 for the primal output of "
                    r"shape \((2, )?3,?\)"),
    "wrong dtype": (lambda p, t: (xp.sin(p[0]), xp.astype(t[0], xp.float32)), r"dtype float32"),
    "not a pair": (lambda p, t: xp.sin(p[0]), r"returned an array of shape .*return a pair"),
    "structure": (lambda p, t: (xp.sin(p[0]), (t[0], t[0])), r"returned a tangent of a tuple of "
                  r"length 2 for the primal output of shape"),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("bad", list(BAD_RULE))
def test_a_wrong_jvp_rule_is_named_in_every_mode(mode, bad):
    rule, msg = BAD_RULE[bad]
    with pytest.raises(xd.CustomRuleError, match=r"custom_jvp f: its jvp rule .*" + msg):
        MODES[mode](_jvp_with(rule))


def test_too_few_cotangents_are_an_error_not_a_zero():
    # the missing cotangent of w used to be taken as zero
    @xd.custom_vjp
    def f(x, w):
        return x * w

    def f_bwd(res, g):
        return (g * res[1],)

    f.defvjp(lambda x, w: (x * w, (x, w)), f_bwd)
    with pytest.raises(xd.CustomRuleError, match=r"custom_vjp f: its bwd rule f_bwd returned 1 "
                       r"cotangent\(s\) for 2 argument\(s\); return a tuple with one cotangent per "
                       r"positional argument of f \(x, w\)"):
        xd.grad(lambda x, w: xp.sum(f(x, w)), argnums=(0, 1))(X, X)


def test_none_is_a_zero_cotangent_and_integer_arguments_have_none():
    @xd.custom_vjp
    def f(x, w, n):
        return x * w * n

    # None for w, anything of n's shape (or None) for the integer n
    f.defvjp(lambda x, w, n: (x * w * n, (w, n)),
             lambda res, g: (g * res[0] * res[1], None, xp.zeros_like(res[1])))
    n = np.array([1, 2, 3])
    gx, gw = xd.grad(lambda x, w: xp.sum(f(x, w, n)), argnums=(0, 1))(X, X)
    np.testing.assert_allclose(gx, X * n)
    np.testing.assert_array_equal(gw, np.zeros(3))


def test_pytree_arguments_are_checked_leaf_by_leaf():
    @xd.custom_vjp
    def f(params, x):
        return params["a"] * x + params["b"]

    def fwd(params, x):
        return f(params, x), (params, x)

    def bwd_ok(res, g):  # None for a leaf
        params, x = res
        return {"a": g * x, "b": None}, g * params["a"]

    def bwd_keys(res, g):
        return {"a": g}, g

    def bwd_leaf(res, g):
        params, x = res
        return {"a": g * x, "b": xp.sum(g)}, g

    p = {"a": X, "b": 2 * X}
    f.defvjp(fwd, bwd_ok)
    gp = xd.grad(lambda p: xp.sum(f(p, X)))(p)
    np.testing.assert_allclose(gp["a"], X)
    np.testing.assert_array_equal(gp["b"], np.zeros(3))
    f.defvjp(fwd, bwd_keys)
    with pytest.raises(xd.CustomRuleError, match=r"bwd rule bwd_keys returned a cotangent of "
                       r"structure .* for params, of structure"):
        xd.grad(lambda p: xp.sum(f(p, X)))(p)
    f.defvjp(fwd, bwd_leaf)
    with pytest.raises(xd.CustomRuleError, match=r"cotangent of shape \(\) and dtype float64 for "
                       r"params\['b'\], which has shape \(3,\)"):
        xd.grad(lambda p: xp.sum(f(p, X)))(p)


def test_a_fwd_that_is_not_a_pair():
    f = _vjp_with(_good_bwd, fwd=lambda x: xp.sin(x))
    with pytest.raises(xd.CustomRuleError, match=r"custom_vjp f: its fwd rule returned an array of "
                       r"shape \(3,\) .*return a pair \(output, residuals for bwd\)"):
        xd.grad(lambda x: xp.sum(f(x)))(X)


def test_a_jvp_rule_whose_primal_output_is_not_the_functions():
    # reverse mode runs both: the rule's primal output is checked against the function's
    f = _jvp_with(lambda p, t: (xp.sin(p[0])[:2], xp.cos(p[0])[:2] * t[0][:2]))
    with pytest.raises(xd.CustomRuleError, match=r"jvp rule returned a primal output of shape "
                       r"\(2,\) and dtype float64 at output, where f returns shape \(3,\)"):
        xd.grad(lambda x: xp.sum(f(x)))(X)


def test_none_is_a_zero_tangent_and_integer_outputs_have_none():
    @xd.custom_jvp
    def f(x):
        return xp.sin(x), xp.astype(x > 0, xp.int64)

    @f.defjvp
    def _(p, t):
        return f(p[0]), (None, xp.zeros(3))

    y, t = xd.jvp(f, (X,), (X,))
    np.testing.assert_array_equal(t[0], np.zeros(3))
    np.testing.assert_allclose(xd.jacrev(lambda x: f(x)[0])(X), np.zeros((3, 3)))


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
