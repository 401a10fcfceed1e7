"""Property test: random compositions of primitives on random shapes.

Forward and reverse mode must agree, both must match finite differences, and
under ``batch_ndim=1`` the batch Jacobian must equal the per-sample ones.  This
finds bugs in how rules combine (broadcasting, symbolic zeros, shared
subexpressions, nesting), not only in single rules.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import xpdiff as xd
from xpdiff.testing import check_grads

# Each op takes (xp, a, b) where b is another live value of the same shape, and
# returns a value; all act on trailing axes, so programs are valid batched code.
UNARY = {
    "sin": lambda xp, a: xp.sin(a),
    "tanh": lambda xp, a: xp.tanh(a),
    "softplus": lambda xp, a: xp.log1p(xp.exp(-xp.abs(a))) + xp.maximum(a, 0.0),
    "square": lambda xp, a: a * a,
    "scale": lambda xp, a: 0.5 * a - 1.0,
    "cumsum": lambda xp, a: xp.cumulative_sum(a, axis=-1),
    "flip": lambda xp, a: xp.flip(a, axis=-1),
    "roll_slices": lambda xp, a: xp.concat([a[..., 1:], a[..., :1]], axis=-1),
    "center": lambda xp, a: a - xp.mean(a, axis=-1, keepdims=True),
    "norm_sq": lambda xp, a: a * xp.tanh(xp.sum(a * a, axis=-1, keepdims=True)),  # bounded
    # cubic in a, divided by 1 + |a|^2 so that chains of it stay O(|a|): unbounded growth
    # made later sin() arguments so large that finite differences could not follow them
    "outer_mm": lambda xp, a: xp.squeeze(a[..., None, :] @ (a[..., :, None] * a[..., None, :]),
                                         axis=-2) / (1.0 + xp.sum(a * a, axis=-1, keepdims=True)),
    "transpose": lambda xp, a: xp.reshape(xp.matrix_transpose(a[..., None]), a.shape),
    "reshape_roundtrip": lambda xp, a: xp.reshape(xp.reshape(a, tuple(a.shape[:-1]) + (a.shape[-1], 1)) * 2.0,
                                                  a.shape),
    "setitem": lambda xp, a: _setitem(xp, a),
}
BINARY = {
    "add": lambda xp, a, b: a + b,
    "mul": lambda xp, a, b: a * b,
    "sub_bcast": lambda xp, a, b: a - b[..., :1],
    "where": lambda xp, a, b: xp.where(a > 0.25, a * b, b - a),  # a tie is measure-zero
    "stack_sum": lambda xp, a, b: xp.sum(xp.stack([a, b], axis=-1) * 0.5, axis=-1),
}


def _setitem(xp, a):
    out = a * 1.0
    out[..., 0] = xp.sin(a[..., -1])
    return out


@st.composite
def programs(draw):
    ndim = draw(st.integers(1, 2))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    steps = draw(st.lists(
        st.one_of(st.tuples(st.just("u"), st.sampled_from(sorted(UNARY))),
                  st.tuples(st.just("b"), st.sampled_from(sorted(BINARY)), st.integers(0, 10))),
        min_size=1, max_size=6))
    seed = draw(st.integers(0, 2**16))
    return shape, steps, seed


def make(steps):
    def f(x, y):
        xp = x.__array_namespace__()
        vals = [x, y]
        for step in steps:
            if step[0] == "u":
                vals.append(UNARY[step[1]](xp, vals[-1]))
            else:  # combine with an earlier value: shared subexpressions
                vals.append(BINARY[step[1]](xp, vals[-1], vals[step[2] % len(vals)]))
        return vals[-1]

    return f


def _inputs(prog, lead=()):
    shape, steps, seed = prog
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1.5, 1.5, lead + shape), rng.uniform(-1.5, 1.5, lead + shape)
    return make(steps), x, y


@settings(max_examples=60, deadline=None)
@given(programs())
def test_random_compositions_fwd_rev_fd(prog):
    f, x, y = _inputs(prog)
    Jf = xd.jacfwd(f, argnums=(0, 1))(x, y)
    Jr = xd.jacrev(f, argnums=(0, 1))(x, y)
    for a, b in zip(Jf, Jr):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    # one argument: structured identity bases in both modes, against the dense blocks
    np.testing.assert_allclose(xd.jacfwd(f)(x, y), Jr[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(xd.jacrev(f)(x, y), Jr[0], rtol=1e-9, atol=1e-9)
    check_grads(f, (x, y), order=1)


@settings(max_examples=30, deadline=None)
@given(programs())
def test_random_compositions_batch_ndim(prog):
    f, x, y = _inputs(prog, lead=(3,))
    for mode in ("fwd", "rev"):
        J = xd.jacobian(f, argnums=(0, 1), batch_ndim=1, mode=mode)(x, y)
        for b in range(3):
            Jb = xd.jacobian(f, argnums=(0, 1), mode=mode)(x[b], y[b])
            for a, c in zip(J, Jb):
                np.testing.assert_allclose(a[b], c, rtol=1e-9, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(programs())
def test_random_compositions_second_order(prog):
    f, x, y = _inputs(prog)
    g = lambda x: xd.numpy.sum(xd.numpy.sin(f(x, y)))
    H1 = xd.hessian(g)(x)
    H2 = xd.jacrev(xd.grad(g))(x)
    np.testing.assert_allclose(H1, H2, rtol=1e-8, atol=1e-8)
