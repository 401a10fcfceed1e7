"""The public transformations: the seed's shapes, errors, nesting, custom rules."""

from __future__ import annotations

import numpy as np
import pytest

import xpdiff as xd

xp = xd.numpy


def rng(seed=0):
    return np.random.default_rng(seed)


# --- the seed's worked shapes -------------------------------------------------------------

def test_identity_batch_jacobian_is_per_sample_identity(backend):
    x = backend.asarray(np.arange(24.0).reshape(2, 3, 4))
    for jac in (xd.jacfwd, xd.jacrev):
        J = jac(lambda x: x, batch_ndim=1)(x)
        assert J.shape == (2, 3, 4, 3, 4)
        Jn = backend.to_numpy(J).reshape(2, 12, 12)
        np.testing.assert_array_equal(Jn, np.stack([np.eye(12)] * 2))
        if backend.device is not None:
            assert J.device == backend.device


def test_elementwise_batch_jacobian_is_diagonal(backend):
    xn = rng().standard_normal((2, 3, 4))
    x = backend.asarray(xn)
    J = backend.to_numpy(xd.jacobian(lambda x: x.__array_namespace__().exp(x), batch_ndim=1)(x))
    want = np.exp(xn).reshape(2, 12)[:, :, None] * np.eye(12)
    np.testing.assert_allclose(J.reshape(2, 12, 12), want, rtol=1e-12)


def test_batched_matmul_shapes_and_values(backend):
    D, M, N, P = 5, 3, 2, 4
    un, vn = rng(1).standard_normal((D, M, N)), rng(2).standard_normal((D, N, P))
    u, v = backend.asarray(un), backend.asarray(vn)
    for mode in ("fwd", "rev"):
        Ju, Jv = xd.jacobian(lambda u, v: u @ v, argnums=(0, 1), batch_ndim=1, mode=mode)(u, v)
        assert Ju.shape == (D, M, P, M, N) and Jv.shape == (D, M, P, N, P)
        Ju, Jv = backend.to_numpy(Ju), backend.to_numpy(Jv)
        eye_m, eye_p = np.eye(M), np.eye(P)
        np.testing.assert_allclose(Ju, np.einsum("dnp,mk->dmpkn", vn, eye_m), atol=1e-12)
        np.testing.assert_allclose(Jv, np.einsum("dmn,pq->dmpnq", un, eye_p), atol=1e-12)


def test_matmul_without_batch_dims_full_shape():
    u, v = rng(1).standard_normal((4, 3, 2)), rng(2).standard_normal((4, 2, 3))
    J = xd.jacobian(lambda u, v: u @ v)(u, v)
    assert J.shape == (4, 3, 3, 4, 3, 2)


def test_sum_over_diff_axis_shape():
    x = rng().standard_normal((2, 3, 2))
    J = xd.jacobian(lambda x: xp.sum(x, axis=1), batch_ndim=1)(x)
    assert J.shape == (2, 2, 3, 2)


def test_user_example_shape_and_fwd_equals_rev():
    def f(x):
        xp = x.__array_namespace__()
        return xp.sin(x) * xp.exp(x) + x ** 2

    x = rng().standard_normal((256, 64))
    Jf = xd.jacfwd(f, batch_ndim=1)(x)
    Jr = xd.jacrev(f, batch_ndim=1)(x)
    assert Jf.shape == (256, 64, 64)
    np.testing.assert_allclose(Jf, Jr, atol=1e-12)


def test_batch_jacobian_equals_per_sample_full_jacobians():
    W = rng(3).standard_normal((5, 4))

    def mlp(x, W):
        xp = x.__array_namespace__()
        h = xp.tanh(x @ W)
        return xp.concat([h, xp.sum(h * h, axis=-1, keepdims=True)], axis=-1)

    x = rng(4).standard_normal((6, 5))
    for mode in ("fwd", "rev"):
        J = xd.jacobian(mlp, batch_ndim=1, mode=mode)(x, W)
        for b in range(6):
            np.testing.assert_allclose(J[b], xd.jacobian(mlp)(x[b], W), atol=1e-12)


def test_per_example_gradients_wrt_shared_weight_both_modes():
    W = rng(3).standard_normal((5, 4))
    x = rng(4).standard_normal((6, 5))

    def loss(x, W):  # batched code: one loss per sample
        return xp.sum(xp.tanh(x @ W) ** 2, axis=-1)

    for mode in ("fwd", "rev"):
        G = xd.jacobian(loss, argnums=1, batch_ndim=1, mode=mode)(x, W)
        assert G.shape == (6, 5, 4)
        for b in range(6):
            np.testing.assert_allclose(G[b], xd.grad(lambda W: loss(x[b], W))(W), atol=1e-12)


def test_data_argnums_resolves_ambiguous_shared_weight():
    # W's leading size equals the batch size: by shape it would be taken as data
    x = rng(1).standard_normal((4, 4))
    W = rng(2).standard_normal((4, 3))

    def f(x, W):
        return x @ W

    J = xd.jacobian(f, argnums=1, batch_ndim=1, data_argnums=0)(x, W)
    assert J.shape == (4, 3, 4, 3)
    for b in range(4):
        np.testing.assert_allclose(J[b], xd.jacobian(lambda W: x[b] @ W)(W), atol=1e-12)


def test_hessian_batch_shape_symmetry_and_values():
    A = rng(5).standard_normal((3, 3))

    def f(x):
        xp = x.__array_namespace__()
        return xp.sum(xp.log1p(xp.exp(x @ A)), axis=-1) + xp.sum(x ** 4, axis=-1)

    x = rng(6).standard_normal((7, 3))
    H = xd.hessian(f, batch_ndim=1)(x)
    assert H.shape == (7, 3, 3)
    np.testing.assert_allclose(H, np.swapaxes(H, -1, -2), atol=1e-12)
    for b in range(7):
        np.testing.assert_allclose(H[b], xd.hessian(f)(x[b]), atol=1e-12)
        np.testing.assert_allclose(H[b], xd.jacfwd(xd.grad(f))(x[b]), atol=1e-12)


def test_hessian_of_quadratic_form():
    A = rng(7).standard_normal((4, 4))
    H = xd.hessian(lambda x: x @ A @ x)(rng(8).standard_normal(4))
    np.testing.assert_allclose(H, A + A.T, atol=1e-12)


# --- nesting --------------------------------------------------------------------------------

def test_perturbation_confusion():
    def outer(x):
        return x * xd.grad(lambda y: x + y)(np.array(1.0))

    assert float(xd.grad(outer)(np.array(1.0))) == 1.0
    _, t = xd.jvp(outer, (np.array(1.0),), (np.array(1.0),))
    assert float(t) == 1.0


def test_nested_vmap_and_negative_axes():
    x = rng().standard_normal((3, 4, 5))
    out = xd.vmap(xd.vmap(lambda v: xp.sum(v * v), in_axes=-1), in_axes=0)(x)
    np.testing.assert_allclose(out, np.sum(x * x, axis=1), rtol=1e-12)
    out = xd.vmap(lambda v, w: v * w, in_axes=(1, None), out_axes=1)(x, np.ones(5))
    np.testing.assert_allclose(out, x)


def test_vmap_of_grad_and_grad_of_vmap():
    x = rng().standard_normal((4, 3))
    g = xd.vmap(xd.grad(lambda v: xp.sum(xp.sin(v) * v)))(x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-12)
    g2 = xd.grad(lambda x: xp.sum(xd.vmap(lambda v: xp.sum(xp.sin(v) * v))(x)))(x)
    np.testing.assert_allclose(g2, g, rtol=1e-12)


def test_third_order():
    f = lambda x: xp.sin(x) * x
    d3 = xd.grad(xd.grad(xd.grad(lambda x: xp.sum(f(x)))))(np.array(0.7))
    x = 0.7
    np.testing.assert_allclose(d3, -3 * np.sin(x) - x * np.cos(x), rtol=1e-12)


def test_pytrees_argnums_and_has_aux():
    params = {"w": rng(1).standard_normal((3, 2)), "b": np.zeros(2)}
    x = rng(2).standard_normal((5, 3))

    def loss(p, x):
        y = x @ p["w"] + p["b"]
        return xp.sum(y * y), {"y": y}

    g, aux = xd.grad(loss, has_aux=True)(params, x)
    assert set(g) == {"w", "b"} and g["w"].shape == (3, 2)
    np.testing.assert_allclose(g["b"], 2 * np.sum(aux["y"], axis=0), rtol=1e-12)
    gp, gx = xd.grad(lambda p, x: loss(p, x)[0], argnums=(0, 1))(params, x)
    assert gx.shape == (5, 3)
    J = xd.jacobian(lambda p: [p["w"] * 2.0, p["b"]])(params)
    assert J[0]["w"].shape == (3, 2, 3, 2) and J[1]["w"].shape == (2, 3, 2)


def test_vjp_fn_reusable_and_deep_graph():
    x = np.array([0.5, 1.5])

    def chain(x):
        for _ in range(3000):  # deeper than Python's recursion limit
            x = xp.sin(x) * 0.5 + x
        return x

    y, pull = xd.vjp(chain, x)
    g1, = pull(np.ones(2))
    g2, = pull(np.array([1.0, 0.0]))
    assert g2[1] == 0.0 and g2[0] == g1[0]


def test_vjp_fn_checks_the_cotangent_structure_shape_and_dtype(backend):
    """As JAX: the cotangent has out's pytree structure and each leaf its output's shape and
    dtype (a complex cotangent of a real output would lose its imaginary part silently; a
    float32 one of a float64 output raises too); the error names vjp and the output's path.
    Shapes and dtypes only: under torch-cuda's sync debug mode a sync would raise."""
    x = backend.asarray([1.0, 2.0, 3.0])
    out, pull = xd.vjp(lambda x: {"a": x * 2.0, "b": (xp.sum(x), xp.sin(x))}, x)
    ones = lambda o, dtype=np.float64: backend.asarray(np.ones(o.shape), dtype=dtype)  # noqa: E731
    ct = {"a": ones(out["a"]), "b": (ones(out["b"][0]), ones(out["b"][1]))}
    (g,) = pull(ct)
    np.testing.assert_allclose(backend.to_numpy(g), 3.0 + np.cos([1.0, 2.0, 3.0]), rtol=1e-12)
    with pytest.raises(ValueError, match=r"^vjp: the cotangent of out\['b'\]\[1\] has shape \(3,\) and "
                                         r"dtype \S*complex128, but out\['b'\]\[1\] has shape \(3,\) and "
                                         r"dtype \S*float64; .* a real output has a real cotangent"):
        pull({"a": ct["a"], "b": (ct["b"][0], ones(out["b"][1], np.complex128))})
    with pytest.raises(ValueError, match=r"^vjp: the cotangent of out\['a'\] has shape \(3,\) and "
                                         r"dtype \S*float32, but .* cast it with xp.astype\(g, xp.float64\)"):
        pull({"a": ones(out["a"], np.float32), "b": ct["b"]})
    with pytest.raises(ValueError, match=r"^vjp: the cotangent of out\['b'\]\[0\] has shape \(1,\) .* "
                                         r"pass a cotangent of shape \(\) \(it is not broadcast\)"):
        pull({"a": ct["a"], "b": (backend.asarray([1.0]), ct["b"][1])})
    with pytest.raises(ValueError, match=r"^vjp: the cotangent has pytree structure "
                                         r"PyTreeSpec\(\{'a': \*, 'b': \[\*, \*\]\}\), but f's output out "
                                         r"has structure PyTreeSpec\(\{'a': \*, 'b': \(\*, \*\)\}\)"):
        pull({"a": ct["a"], "b": list(ct["b"])})
    with pytest.raises(ValueError, match="^vjp: the cotangent has pytree structure"):
        pull((ct["a"], ct["b"][0], ct["b"][1]))  # as many leaves, another structure
    with pytest.raises(TypeError, match=r"^vjp: the cotangent of out\['a'\] must be an array"):
        pull({"a": "ones", "b": ct["b"]})


def test_vjp_fn_takes_any_cotangent_dtype_of_an_integer_output_and_numbers_for_0d():
    out, pull = xd.vjp(lambda x: (xp.sum(x ** 2), xp.argmax(x)), np.array([1.0, 3.0]))
    for c in (np.zeros((), np.int64), np.zeros(()), 0):  # not used: an integer has no derivative
        np.testing.assert_allclose(pull((np.asarray(1.0), c))[0], [2.0, 6.0])
    np.testing.assert_allclose(pull((0.5, 0))[0], [1.0, 3.0])  # a number for a 0-d output
    with pytest.raises(ValueError, match=r"^vjp: the cotangent of out\[1\] has shape \(1,\)"):
        pull((1.0, np.zeros(1, np.int64)))
    with pytest.raises(ValueError, match=r"^vjp: the cotangent has pytree structure PyTreeSpec\(\(\*, "
                                         r"None\)\)"):
        pull((1.0, None))  # as JAX: None is no cotangent


def test_vjp_fn_refuses_a_cotangent_of_another_backend():
    import array_api_strict as s

    _, pull = xd.vjp(lambda x: x * 2.0, np.ones(3))
    with pytest.raises(TypeError, match=r"^vjp: the cotangent of out is an array of backend "
                                        r"array_api_strict but out is an array of backend numpy"):
        pull(s.ones(3, dtype=s.float64))


def test_stop_gradient():
    g = xd.grad(lambda x: xp.sum(x * xd.stop_gradient(x)))(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(g, [3.0, 4.0])


def test_chunked_jacobians_equal_unchunked():
    A = rng(1).standard_normal((6, 6))
    f = lambda x: xp.tanh(x @ A)
    x = rng(2).standard_normal((3, 6))
    for jac in (xd.jacfwd, xd.jacrev):
        full = jac(f, batch_ndim=1)(x)
        np.testing.assert_allclose(jac(f, batch_ndim=1, chunk_size=4)(x), full, atol=1e-14)
        np.testing.assert_allclose(jac(f, chunk_size=5)(x), jac(f)(x), atol=1e-14)
    np.testing.assert_allclose(xd.vmap(f, chunk_size=2)(x), f(x), atol=1e-14)


# --- custom rules -------------------------------------------------------------------------

@xd.custom_jvp
def softplus(x):
    xp = x.__array_namespace__()
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0.0)


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    xp = x.__array_namespace__()
    return softplus(x), t * (1 / (1 + xp.exp(-x)))


def test_custom_jvp_composes_with_everything():
    x = rng().standard_normal((4, 3))
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(xd.grad(lambda x: xp.sum(softplus(x)))(x), sig, rtol=1e-12)
    J = xd.jacobian(softplus, batch_ndim=1)(x)
    np.testing.assert_allclose(J, sig[:, :, None] * np.eye(3), rtol=1e-12)
    np.testing.assert_allclose(xd.jacrev(softplus, batch_ndim=1)(x), J, rtol=1e-12)
    np.testing.assert_allclose(xd.vmap(xd.grad(lambda v: xp.sum(softplus(v))))(x), sig, rtol=1e-12)
    H = xd.hessian(lambda v: xp.sum(softplus(v)))(x[0])
    np.testing.assert_allclose(np.diag(H), sig[0] * (1 - sig[0]), rtol=1e-10)


def test_custom_vjp_used_in_reverse_and_batched():
    @xd.custom_vjp
    def clip_grad(x):
        return x

    def fwd(x):
        return x, None

    def bwd(res, g):
        return (g.__array_namespace__().clip(g, -1.0, 1.0),)

    clip_grad.defvjp(fwd, bwd)
    x = np.array([1.0, 2.0])
    np.testing.assert_array_equal(xd.grad(lambda x: xp.sum(3.0 * clip_grad(x)))(x), [1.0, 1.0])
    # under vmap (the batch trace re-binds the rule), then reverse mode
    g = xd.grad(lambda x: xp.sum(xd.vmap(lambda v: 3.0 * clip_grad(v))(x)))(np.ones((2, 2)))
    np.testing.assert_array_equal(g, np.ones((2, 2)))
    # forward mode differentiates the function itself
    _, t = xd.jvp(clip_grad, (x,), (np.array([5.0, 5.0]),))
    np.testing.assert_array_equal(t, [5.0, 5.0])


def test_custom_jvp_implicit_function():
    # sqrt by Newton iterations, differentiated by the implicit function theorem
    @xd.custom_jvp
    def newton_sqrt(a):
        x = a * 0 + 1.0
        for _ in range(40):
            x = 0.5 * (x + a / x)
        return x

    @newton_sqrt.defjvp
    def _(primals, tangents):
        (a,), (t,) = primals, tangents
        y = newton_sqrt(a)
        return y, t / (2 * y)

    a = np.array([2.0, 9.0])
    np.testing.assert_allclose(xd.grad(lambda a: xp.sum(newton_sqrt(a)))(a), 0.5 / np.sqrt(a))


# --- errors -----------------------------------------------------------------------------

def test_integer_input_refused():
    with pytest.raises(TypeError, match="(?i)cast"):
        xd.grad(lambda x: xp.sum(x))(np.arange(3))
    with pytest.raises(TypeError, match="floating"):
        xd.jacobian(lambda x: x, batch_ndim=1)(np.ones((2, 2), dtype=np.int64))


def test_grad_non_scalar_output():
    with pytest.raises(TypeError, match="jacrev"):
        xd.grad(lambda x: x * 2)(np.ones(3))
    with pytest.raises(TypeError, match="must return arrays"):
        xd.grad(lambda x: "nope")(np.ones(3))


def test_jvp_tangent_mismatch():
    with pytest.raises(ValueError, match="tangent 0 has shape"):
        xd.jvp(lambda x: x, (np.ones(3),), (np.ones(2),))
    with pytest.raises(ValueError, match="dtype"):
        xd.jvp(lambda x: x, (np.ones(3),), (np.ones(3, dtype=np.float32),))


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match="argnums"):
        xd.grad(lambda x: xp.sum(x), argnums=1)(np.ones(3))


def test_in_axes_errors():
    with pytest.raises(ValueError, match="in_axes"):
        xd.vmap(lambda x, y: x, in_axes=(0, 0, 0))(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="has size .* but .* has size"):
        xd.vmap(lambda x, y: x + y)(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="out of range"):
        xd.vmap(lambda x: x, in_axes=2)(np.ones((3, 3)))


def test_batch_ndim_errors():
    with pytest.raises(ValueError, match="batch_ndim"):
        xd.jacobian(lambda x: x, batch_ndim=3)(np.ones((2, 2)))
    with pytest.raises(ValueError, match="data shapes disagree"):
        xd.jacobian(lambda x, y: x + y, batch_ndim=1, data_argnums=(0, 1))(np.ones((2, 2)),
                                                                          np.ones((3, 2)))


@pytest.mark.parametrize("f, op", [
    (lambda x: xp.sum(x, axis=0), "'sum'"),
    (lambda x: xp.sum(x), "'sum'"),
    (lambda x: xp.reshape(x, (-1,)), "'reshape'"),
    (lambda x: x.T @ x, "'permute_dims'"),
    (lambda x: xp.mean(x, axis=0, keepdims=True) - x, "'mean'"),
    (lambda x: xp.cumulative_sum(x, axis=0), "'cumulative_sum'"),
    (lambda x: x[0, ...] * x, "'getitem'"),
    (lambda x: xp.flip(x, axis=0), "'flip'"),
    (lambda x: xp.concat([x, x], axis=0), "'concat'"),
])
@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_sample_mixing_is_refused(f, op, mode):
    x = rng().standard_normal((4, 3))
    with pytest.raises(xd.MixingError, match=op):
        xd.jacobian(f, batch_ndim=1, mode=mode)(x)
    # the trace state is clean afterwards
    assert xd.jacobian(lambda x: x * 2.0, batch_ndim=1)(x).shape == (4, 3, 3)


@pytest.mark.parametrize("vshape, wshape, axes", [
    ((4, 2, 3), (3, 5), 1),
    ((4, 2, 3), (2, 3, 5), 2),
    ((4, 3), (3,), 1),
    ((4, 2, 3), (3, 2, 5), ([1, 2], [1, 0])),
    ((4, 3), (5, 3), ([-1], [-1])),
    ((4, 3), (5,), 0),
])
@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_tensordot_under_batch_ndim_is_per_sample(vshape, wshape, axes, mode):
    # tensordot keeps x1's leading free dims leading (it once merged them with a reshape
    # and raised a MixingError naming 'reshape' where v @ W works)
    v, W = rng().standard_normal(vshape), rng(1).standard_normal(wshape)
    J = xd.jacobian(lambda v: xp.tensordot(v, W, axes=axes), batch_ndim=1, mode=mode)(v)
    for b in range(vshape[0]):
        want = xd.jacobian(lambda u: xp.tensordot(u[None], W, axes=axes)[0])(v[b])
        np.testing.assert_allclose(J[b], want, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(xp.tensordot(v, W, axes=axes), np.tensordot(v, W, axes=axes),
                               rtol=1e-13)


def test_tensordot_contracting_a_data_dim_names_tensordot():
    v, W = rng().standard_normal((4, 3)), rng(1).standard_normal((4, 5))
    with pytest.raises(xd.MixingError, match="'tensordot'"):
        xd.jacobian(lambda v: xp.tensordot(v, W, axes=([0], [0])), batch_ndim=1)(v)
    # x1 contracted whole: x2's leading (data) dims stay leading
    w = rng(2).standard_normal(3)
    J = xd.jacobian(lambda v: xp.tensordot(w, v, axes=([0], [1])), batch_ndim=1)(v)
    np.testing.assert_allclose(J, np.broadcast_to(w, (4, 3)), rtol=1e-14)


def test_shared_array_with_batch_rows_is_lifted():
    # a constant made inside f with the data shape behaves as in the batched code
    x = rng().standard_normal((4, 3))
    w = rng(1).standard_normal((4, 1))

    def f(x):
        xp = x.__array_namespace__()
        out = xp.zeros((x.shape[0], 5))
        out[:, 1:4] = x * xp.asarray(w)
        return out

    J = xd.jacobian(f, batch_ndim=1)(x)
    assert J.shape == (4, 5, 3)
    for b in range(4):
        want = np.zeros((5, 3))
        want[1:4] = np.eye(3) * w[b]
        np.testing.assert_allclose(J[b], want, atol=1e-14)


def test_escapes_refuse_to_drop_derivatives():
    for fn, msg in [(float, "float"), (bool, "bool"), (np.asarray, "NumPy"), (int, "int")]:
        with pytest.raises(TypeError, match=msg):
            xd.grad(lambda x: fn(xp.sum(x)))(np.ones(2))
    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        xd.grad(lambda x: xp.sum(xp.stack(list(xp.sum(x)))))(np.ones(2))


def test_missing_rule_names_primitive_and_transformation():
    from xpdiff.core import primitive

    p = primitive("test_no_rules", lambda bk, x: x)
    with pytest.raises(NotImplementedError, match="test_no_rules.*jvp"):
        xd.jvp(lambda x: p.bind(x), (np.ones(2),), (np.ones(2),))
    with pytest.raises(NotImplementedError, match="test_no_rules.*vjp"):
        xd.grad(lambda x: xp.sum(p.bind(x)))(np.ones(2))
    with pytest.raises(NotImplementedError, match="Batching rule for 'test_no_rules'"):
        xd.vmap(lambda x: p.bind(x))(np.ones((2, 2)))
    from xpdiff import core as _core

    del _core.PRIMITIVES["test_no_rules"]
    assert not _core._STACK


def test_state_clean_after_error():
    from xpdiff import core as _core

    def bad(x):
        xp.sin(x)
        raise RuntimeError("user error midway")

    with pytest.raises(RuntimeError, match="midway"):
        xd.jacobian(bad, batch_ndim=1)(np.ones((2, 2)))
    assert not _core._STACK
    np.testing.assert_array_equal(xd.grad(lambda x: xp.sum(x * x))(np.ones(2)), [2.0, 2.0])


# --- structured forward Jacobians ------------------------------------------------------------

def _softmax(x):
    xp = x.__array_namespace__()
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _bound(fn):
    from xpdiff import core as _core

    seen = []
    _core.BIND_HOOK = lambda p: seen.append(p.name)
    try:
        out = fn()
    finally:
        _core.BIND_HOOK = None
    return out, seen


def test_elementwise_jacobian_stays_diagonal():
    x = rng().standard_normal((16, 8))
    J, seen = _bound(lambda: xd.jacfwd(lambda x: xp.sin(x) * xp.exp(x) + x ** 2, batch_ndim=1)(x))
    assert "diag_embed" in seen and "lowrank_diag" not in seen
    d = np.cos(x) * np.exp(x) + np.sin(x) * np.exp(x) + 2 * x
    np.testing.assert_allclose(J, d[:, :, None] * np.eye(8), rtol=1e-12)


def test_softmax_jacobian_is_diagonal_plus_low_rank(backend):
    xn = rng().standard_normal((16, 8))
    x = backend.asarray(xn)
    J, seen = _bound(lambda: xd.jacfwd(_softmax, batch_ndim=1)(x))
    assert "lowrank_diag" in seen
    s = np.exp(xn - xn.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    want = s[:, :, None] * np.eye(8) - s[:, :, None] * s[:, None, :]
    np.testing.assert_allclose(backend.to_numpy(J), want, atol=1e-14)
    # chunks of the basis (partial identities) and reverse mode agree
    np.testing.assert_allclose(backend.to_numpy(xd.jacfwd(_softmax, batch_ndim=1, chunk_size=3)(x)),
                               want, atol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(xd.jacrev(_softmax, batch_ndim=1)(x)), want,
                               atol=1e-14)


def test_centered_sum_jacobian_with_a_scalar_weight(backend):
    """``a - mean(a)`` with ``a = x + x``: the structured tangent's low-rank term carries the
    Python scalar -1 as its weight (regression: jacfwd broadcast it as an array)."""
    def f(x):
        a = x + x
        return a - _ns(a).mean(a, axis=-1, keepdims=True)

    x = backend.asarray(np.arange(3.0))
    want = 2 * (np.eye(3) - 1 / 3)
    for jac in (xd.jacfwd, xd.jacrev):
        np.testing.assert_allclose(backend.to_numpy(jac(f)(x)), want, atol=1e-14)


def _shifted(x):
    return x - _ns(x).max(x, axis=-1, keepdims=True)


_CLOSED_FORM_CASES = {  # name: (f, whether max's shift cancels exactly)
    "softmax": (_softmax, True),
    "log_softmax": (lambda x: (lambda z: z - _ns(z).log(_ns(z).sum(_ns(z).exp(z), axis=-1,
                                                                    keepdims=True)))(_shifted(x)),
                    True),
    "softmax of 2 (x - max)": (lambda x: _softmax(x * 2.0), True),
    "mean-shifted softmax": (lambda x: (lambda e: e / _ns(x).sum(e, axis=-1, keepdims=True))(
        _ns(x).exp(x - _ns(x).mean(x, axis=-1, keepdims=True))), True),
    "exp(x - max)": (lambda x: _ns(x).exp(_shifted(x)), False),
    "exp(x - max) / sum**2": (lambda x: (lambda e: e / (_ns(x).sum(e, axis=-1, keepdims=True)
                                                        ** 2))(_ns(x).exp(_shifted(x))), False),
    "softmax * x": (lambda x: _softmax(x) * x, False),
    "x - max": (_shifted, False),
}


@pytest.mark.parametrize("case", list(_CLOSED_FORM_CASES))
def test_low_rank_weights_in_closed_form(case, backend, monkeypatch):
    """A shift by a reduction of the input (``x - max(x)``) gives a low-rank term whose
    weight passes exp, products, quotients and sums in closed form: where it cancels
    exactly (softmax, log_softmax, a scaled shift, a mean shift) the term is dropped and
    the Jacobian is diagonal plus rank one; elsewhere it stays.  Every case agrees with
    the dense rules (reverse mode over a chunked basis) and a chunked forward basis."""
    f, cancels = _CLOSED_FORM_CASES[case]
    x = backend.asarray(rng(10).standard_normal((5, 6)))
    ranks = []
    import xpdiff.rules.structure as structure

    real = structure.lowrank_diag

    def spy(s, W, C):
        ranks.append(W.shape[-1])
        return real(s, W, C)

    monkeypatch.setattr("xpdiff.transforms.engine.lowrank_diag", spy)
    J = xd.jacfwd(f, batch_ndim=1)(x)
    monkeypatch.setattr("xpdiff.transforms.engine.lowrank_diag", real)
    if cancels:
        assert ranks == [1], ranks
    elif ranks:
        assert ranks[0] >= 1
    want = xd.jacrev(f, batch_ndim=1, chunk_size=2)(x)
    for got in (J, xd.jacfwd(f, batch_ndim=1, chunk_size=2)(x)):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=1e-12,
                                   atol=1e-13)


_CHAIN_STEPS = {  # shifts, scalings and normalisations: the closed forms' ground
    "shift by max": lambda z: z - xp.max(z, axis=-1, keepdims=True),
    "shift by mean": lambda z: z - xp.mean(z, axis=-1, keepdims=True),
    "exp": lambda z: xp.exp(z * 0.3),
    "log": lambda z: xp.log(xp.abs(z) + 0.5),
    "times 1.7": lambda z: z * 1.7,
    "square": lambda z: z * z,
    "over sum": lambda z: z / (xp.sum(xp.abs(z), axis=-1, keepdims=True) + 1.0),
    "over max": lambda z: z / (xp.max(xp.abs(z), axis=-1, keepdims=True) + 1.0),
    "negative": lambda z: -z,
    "plus 0.25": lambda z: z + 0.25,
    "softmax": lambda z: xp.exp(z * 0.2) / xp.sum(xp.exp(z * 0.2), axis=-1, keepdims=True),
    "minus logsumexp": lambda z: z - xp.log(xp.sum(xp.exp(z * 0.1), axis=-1, keepdims=True)),
    "times an array": lambda z: z * xd.numpy.asarray(np.linspace(0.5, 1.5, 7)),
}


@pytest.mark.parametrize("seed", range(60))
def test_random_shift_and_scale_chains_match_the_dense_rules(seed):
    """Random chains of shifts by reductions, exp, log, products, quotients and
    normalisations (where weights in closed form cancel, partly cancel or pass): the
    structured forward Jacobian equals reverse mode over a chunked basis."""
    import random

    r = random.Random(seed)
    steps = [r.choice(list(_CHAIN_STEPS)) for _ in range(r.randint(2, 6))]

    def f(z):
        for name in steps:
            z = _CHAIN_STEPS[name](z)
        return z

    x = np.random.default_rng(seed).standard_normal((3, 7))
    np.testing.assert_allclose(xd.jacfwd(f, batch_ndim=1)(x),
                               xd.jacrev(f, batch_ndim=1, chunk_size=2)(x),
                               rtol=1e-9, atol=1e-11, err_msg=str(steps))


def test_softmax_jacobian_replays_without_the_derivative_of_max():
    """The tie weights of max's derivative are computed eagerly but feed only a term that
    cancels: the replayed program has none of their calls (28 calls before, 12 now)."""
    x = rng(11).standard_normal((16, 16))
    jac = xd.jit(xd.jacfwd(_softmax, batch_ndim=1))
    np.testing.assert_array_equal(jac(x), xd.jacfwd(_softmax, batch_ndim=1)(x))
    text = str(jac.lower(x))
    assert "equal(" not in text and "isnan(" not in text, text
    assert jac.lower(x).n_calls <= 12


def _mm(a, b):
    t = a if isinstance(a, xd.tracer.Tracer) else b
    return t.__array_namespace__().matmul(a, b)  # (strict arrays refuse ``raw @ tracer``)


def _ns(v):
    return v.__array_namespace__()


_MATMUL_BASIS_CASES = {  # name: (f(A, B, v), argument shape, batch_ndim)
    "A @ x": (lambda A, B, v: _mm(A, v), (4,), 0),
    "sin(x) @ B": (lambda A, B, v: _mm(_ns(v).sin(v), B), (4,), 0),
    "X @ B": (lambda A, B, v: _mm(v, B), (3, 4), 0),
    "A2 @ exp(X)": (lambda A, B, v: _mm(A[:2, :3], _ns(v).exp(v)), (3, 4), 0),
    "tanh(X) @ B, batch_ndim": (lambda A, B, v: _mm(_ns(v).tanh(v), B), (6, 3, 4), 1),
    "tanh(x @ B), batch_ndim": (lambda A, B, v: _ns(v).tanh(_mm(v, B)), (7, 4), 1),
}


@pytest.mark.parametrize("case", list(_MATMUL_BASIS_CASES))
def test_matmul_of_an_identity_basis_is_written_from_the_other_operand(case, backend, monkeypatch):
    from xpdiff import core as _core

    f, shape, k = _MATMUL_BASIS_CASES[case]
    g = rng(3)
    A, B = backend.asarray(g.standard_normal((5, 4))), backend.asarray(g.standard_normal((4, 2)))
    v = backend.asarray(g.standard_normal(shape))

    def h(v):
        return f(A, B, v)

    products = []
    raw = _core.eval_raw

    def counting(prim, args, params):
        if prim.name == "matmul":
            products.append(tuple(a.shape for a in args))
        return raw(prim, args, params)

    monkeypatch.setattr(_core, "eval_raw", counting)
    J = xd.jacfwd(h, batch_ndim=k)(v)
    assert len(products) == 1, products  # the primal product only: none with a basis
    products.clear()
    Jr = xd.jacrev(h, batch_ndim=k)(v)  # a structured basis of output cotangents
    assert len(products) == 1, products
    monkeypatch.setattr(_core, "eval_raw", raw)
    # a chunked basis (partial identities) takes the general rules and agrees
    want = xd.jacrev(h, batch_ndim=k, chunk_size=2)(v)
    Jc = xd.jacfwd(h, batch_ndim=k, chunk_size=2)(v)
    for got in (J, Jr, Jc):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), atol=1e-14)


def _sq(A, v):
    return _mm(A[:4, :4], v)


def _softmax_of(z):
    e = _ns(z).exp(z - _ns(z).max(z))
    return e / _ns(z).sum(e)


_SCALED_BASE_CASES = {  # name: f(A, v) for v of shape (4,), A (5, 4)
    "exp(z) * sin(z) + z": lambda A, v: (lambda z: _ns(z).exp(z) * _ns(z).sin(z) + z)(_mm(A, v)),
    "where(z > 0, z, z / 10)": lambda A, v: (lambda z: _ns(z).where(z > 0, z, z / 10))(_mm(A, v)),
    "softmax(z)": lambda A, v: _softmax_of(_mm(A, v)),
    "sum(exp(z)) * z": lambda A, v: (lambda z: _ns(z).sum(_ns(z).exp(z)) * z)(_mm(A, v)),
    "max(z) - z": lambda A, v: (lambda z: _ns(z).max(z) - z)(_mm(A, v)),
    "tanh(A4 @ x) + x": lambda A, v: _ns(v).tanh(_sq(A, v)) + v,
    "x * exp(A4 @ x)": lambda A, v: v * _ns(v).exp(_sq(A, v)),
    "exp(A @ x) + sin(A' @ x)": lambda A, v: _ns(v).exp(_mm(A, v)) + _ns(v).sin(_mm(A[::-1, :], v)),
    "where(x > 0, A4 @ x, x)": lambda A, v: _ns(v).where(v > 0, _sq(A, v), v),
}


@pytest.mark.parametrize("case", list(_SCALED_BASE_CASES))
def test_elementwise_rules_after_a_basis_product_scale_the_base(case, backend):
    """The tangents of ``A @ x`` over ``x``'s identity basis are ``A``'s columns, kept as a
    scaled base (``Diag.base``): elementwise rules, selects, reductions and low-rank terms
    after it must agree with the dense rules (a chunked basis) and with reverse mode."""
    f = _SCALED_BASE_CASES[case]
    g = rng(5)
    A = backend.asarray(g.standard_normal((5, 4)))
    v = backend.asarray(g.standard_normal((4,)))

    def h(v):
        return f(A, v)

    want = xd.jacfwd(h, chunk_size=2)(v)
    for got in (xd.jacfwd(h)(v), xd.jacrev(h)(v), xd.jacrev(h, chunk_size=2)(v)):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), atol=1e-13)


def _basis_sized_calls(fn, monkeypatch, shape):
    """The primitives (other than matmul and layout changes) whose output has ``shape``."""
    from xpdiff import core as _core

    raw, seen = _core.eval_raw, []

    def counting(prim, args, params):
        out = raw(prim, args, params)
        if tuple(getattr(out, "shape", ())) == shape and prim.name not in (
                "matmul", "permute_dims", "reshape", "matrix_transpose"):
            seen.append(prim.name)
        return out

    monkeypatch.setattr(_core, "eval_raw", counting)
    try:
        return fn(), seen
    finally:
        monkeypatch.setattr(_core, "eval_raw", raw)


def test_a_chain_after_a_basis_product_makes_one_pass_over_the_basis(monkeypatch):
    g = rng(6)
    A, v = g.standard_normal((5, 4)), g.standard_normal(4)
    f = _SCALED_BASE_CASES["exp(z) * sin(z) + z"]
    J, seen = _basis_sized_calls(lambda: xd.jacfwd(lambda v: f(A, v))(v), monkeypatch, (4, 5))
    assert seen == ["multiply"]  # the base (A's columns) times the chain's scale, once
    z = A @ v
    d = np.exp(z) * (np.sin(z) + np.cos(z)) + 1
    np.testing.assert_allclose(J, d[:, None] * A, rtol=1e-13)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_residual_layer_jacobian_adds_the_identity_on_the_diagonal(mode, monkeypatch):
    """``tanh(A @ x) + x`` in both modes: ``A``'s rows (columns) scaled once and the identity
    added on the diagonal, not as an identity matrix and a full add."""
    g = rng(9)
    A, x = g.standard_normal((6, 6)), g.standard_normal(6)
    J, seen = _basis_sized_calls(
        lambda: xd.jacobian(lambda v: xp.tanh(xp.matmul(xd.numpy.asarray(A), v)) + v,
                            mode=mode)(x), monkeypatch, (6, 6))
    assert sorted(seen) == ["add_diag", "multiply"], seen
    np.testing.assert_allclose(J, (1 - np.tanh(A @ x) ** 2)[:, None] * A + np.eye(6), rtol=1e-13)


def test_logistic_hessian_scales_the_basis_product_once(monkeypatch):
    """``hessian`` of ``sum(log(1 + exp(A x))) + |x|^2 / 2`` is ``A^T diag(p (1 - p)) A + I``:
    the forward pass over the gradient's elementwise chain scales ``A``'s columns once."""
    g = rng(7)
    A, x = g.standard_normal((12, 4)), g.standard_normal(4)

    def f(x):
        z = xp.matmul(xd.numpy.asarray(A), x)
        return xp.sum(xp.log(1.0 + xp.exp(z))) + 0.5 * xp.sum(x * x)

    H, seen = _basis_sized_calls(lambda: xd.hessian(f)(x), monkeypatch, (4, 12))
    assert seen == ["multiply"], seen
    p = 1 / (1 + np.exp(-A @ x))
    np.testing.assert_allclose(H, A.T @ (A * (p * (1 - p))[:, None]) + np.eye(4), rtol=1e-12)


@pytest.mark.parametrize("samples", [3, 40])
def test_per_sample_reverse_jacobian_of_a_layer_scales_the_base(samples, backend, monkeypatch):
    """``jacrev`` of ``tanh(x @ W1) @ W2`` per sample: the cotangents of the hidden layer are
    ``W2``'s rows scaled per sample (a scaled base); with more samples than ``x`` has
    entries, the product with ``W1`` is one product of the scales with a matrix formed once
    (``matmul``'s scaled_vjp) and no per-sample stack of scaled rows is formed.  Both
    agree with the dense rules (one cotangent at a time) and with forward mode."""
    g = rng(8)
    W1n, W2n = g.standard_normal((5, 7)), g.standard_normal((7, 3))
    W1, W2 = backend.asarray(W1n), backend.asarray(W2n)
    x = backend.asarray(g.standard_normal((samples, 5)))

    def f(x):
        return _mm(_ns(x).tanh(_mm(x, W1)), W2)

    J, seen = _basis_sized_calls(lambda: xd.jacrev(f, batch_ndim=1)(x), monkeypatch,
                                 (samples, 3, 7))
    assert seen == (["multiply"] if samples <= 5 else []), seen
    xn = backend.to_numpy(x)
    s = 1 - np.tanh(xn @ W1n) ** 2
    want = np.einsum("ho,bh,ih->boi", W2n, s, W1n)
    np.testing.assert_allclose(backend.to_numpy(J), want, rtol=1e-12, atol=1e-13)
    for other in (xd.jacrev(f, batch_ndim=1, chunk_size=1)(x), xd.jacfwd(f, batch_ndim=1)(x)):
        np.testing.assert_allclose(backend.to_numpy(other), want, rtol=1e-12, atol=1e-13)


def test_reverse_jacobian_of_elementwise_map_stays_diagonal(backend):
    xn = rng(4).standard_normal((16, 8))
    J, seen = _bound(lambda: xd.jacrev(lambda x: xd.numpy.sin(x) * x + x, batch_ndim=1)(
        backend.asarray(xn)))
    assert "diag_embed" in seen and "matmul" not in seen
    d = np.cos(xn) * xn + np.sin(xn) + 1
    np.testing.assert_allclose(backend.to_numpy(J), d[:, :, None] * np.eye(8), rtol=1e-12)


def test_python_control_flow_on_constants_is_allowed():
    # a comparison carries no derivative: bool() of it is fine (as in eager JAX/torch)
    def f(x):
        if xp.any(x < 0):
            x = -x
        n = int(xp.sum(xp.astype(x > 1.0, xp.int64)))
        return xp.sum(x * x) * (n + 1)

    np.testing.assert_allclose(xd.grad(f)(np.array([-2.0, 0.5])), [-8.0, 2.0])  # 4 x
    # but not under vmap, where the comparison is a batch of values
    with pytest.raises(TypeError, match="bool"):
        xd.vmap(xd.grad(f))(np.array([[-2.0, 0.5], [1.0, 2.0]]))


def test_gradient_of_real_weight_of_complex_spectrum_is_real():
    x = rng(1).standard_normal(8)
    w = rng(2).standard_normal(5)
    g = xd.grad(lambda w: xp.sum(xp.fft.irfft(xp.fft.rfft(x) * w, n=8) ** 2))(w)
    assert g.dtype == np.float64
    eps, fd = 1e-6, []
    f = lambda w: np.sum(np.fft.irfft(np.fft.rfft(x) * w, n=8) ** 2)
    for i in range(5):
        e = np.zeros(5)
        e[i] = eps
        fd.append((f(w + e) - f(w - e)) / (2 * eps))
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_transformations_in_threads_are_independent():
    import threading

    errors, results = [], {}

    def work(i):
        try:
            x = np.full((4, 3), float(i + 1))
            for _ in range(20):
                J = xd.jacobian(lambda v: xp.sin(v) * v, batch_ndim=1)(x)
            results[i] = J
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, J in results.items():
        v = float(i + 1)
        np.testing.assert_allclose(J[0], (np.cos(v) * v + np.sin(v)) * np.eye(3), rtol=1e-12)


def test_auto_mode_rule():
    from xpdiff.transforms.api import auto_mode

    A = rng(5).standard_normal((6, 6))
    x, xs = rng(6).standard_normal(6), rng(7).standard_normal((3, 6))
    assert auto_mode(lambda x: xp.concat([x, x]), (x,)) == "fwd"  # fewer inputs
    assert auto_mode(lambda x: xp.sum(x * x), (x,)) == "rev"  # fewer outputs
    # equal sizes: reverse when its structured basis survives every node ...
    assert auto_mode(lambda x: xp.tanh(A @ x) + x, (x,)) == "rev"
    assert auto_mode(lambda x: xp.sin(x) * x, (xs,), batch_ndim=1) == "rev"
    # ... else forward, whose structure survives reductions (softmax)
    assert auto_mode(_softmax, (xs,), batch_ndim=1) == "fwd"
    assert auto_mode(lambda x: x * xp.sum(x), (x,)) == "fwd"
    for f, a, k in [(lambda x: xp.tanh(A @ x) + x, x, 0), (_softmax, xs, 1)]:
        np.testing.assert_allclose(xd.jacobian(f, batch_ndim=k)(a), xd.jacfwd(f, batch_ndim=k)(a),
                                   atol=1e-14)


def _sin_with_constant_rule():
    """sin of a 3-vector as a custom_jvp whose function and rule create arrays (xp.ones)."""
    @xd.custom_jvp
    def c(a):
        return xp.ones(3) * xp.sin(a)

    @c.defjvp
    def _(p, t):
        return c(p[0]), xp.ones(3) * xp.cos(p[0]) * t[0]

    return c


def test_custom_rules_that_create_constants_run_one_level_down():
    # fwd / jvp rules that create arrays (xp.eye, xp.ones) used to return tracers of the
    # transformation that called them: a crash in reverse mode, a tracer as a tangent in
    # forward mode
    @xd.custom_vjp
    def k(a):
        return a @ xp.eye(3)

    k.defvjp(lambda a: (k(a), (a,)), lambda res, g: (2 * g,))
    a = np.ones(3)
    np.testing.assert_allclose(xd.grad(lambda a: xp.sum(k(a)))(a), np.full(3, 2.0))
    np.testing.assert_allclose(xd.jacrev(k)(a), 2 * np.eye(3))
    np.testing.assert_allclose(xd.jacobian(k, batch_ndim=1, mode="rev")(np.ones((2, 3))),
                               np.broadcast_to(2 * np.eye(3), (2, 3, 3)))
    out, pull = xd.vjp(k, a)
    assert type(out) is np.ndarray

    c = _sin_with_constant_rule()
    y, t = xd.jvp(c, (a,), (a,))
    assert type(t) is np.ndarray
    np.testing.assert_allclose(t, np.cos(a))
    np.testing.assert_allclose(xd.grad(lambda a: xp.sum(c(a)))(a), np.cos(a))
    np.testing.assert_allclose(xd.jacrev(xd.grad(lambda a: xp.sum(c(a))))(a), np.diag(-np.sin(a)))

    # a transformation started inside the rule still lifts its own constants
    @xd.custom_vjp
    def n(a):
        return xp.sin(a)

    def n_fwd(a):
        inner = xd.grad(lambda b: xp.sum(xp.ones(3) * xp.sin(b)))(a)
        return xp.sin(a), (inner,)

    n.defvjp(n_fwd, lambda res, g: (g * res[0],))
    np.testing.assert_allclose(xd.grad(lambda a: xp.sum(n(a)))(a), np.cos(a))


def test_hessian_through_a_custom_jvp_rule_that_creates_constants():
    c = _sin_with_constant_rule()
    a = np.ones(3)
    np.testing.assert_allclose(xd.hessian(lambda a: xp.sum(c(a)))(a), np.diag(-np.sin(a)))
    # the structured (Diag) tangent of jacfwd, and its dense rows under batch_ndim
    g = xd.grad(lambda a: xp.sum(c(a)))
    np.testing.assert_allclose(xd.jacfwd(g)(a), np.diag(-np.sin(a)))
    A = np.stack([a, 2 * a])
    H = xd.hessian(lambda v: xp.sum(c(v), axis=-1), batch_ndim=1)(A)
    np.testing.assert_allclose(H, np.stack([np.diag(-np.sin(v)) for v in A]))
