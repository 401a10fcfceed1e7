"""The complex convention of every transform (docs/complex.md): JAX's.

Forward mode takes real inputs, reverse mode real outputs, unless ``holomorphic=True``
(then everything is complex and both modes give ``df/dz``); ``jacobian(mode="auto")``
takes the one mode that applies, so the mode never decides the answer.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpdiff as xd
from xpdiff.transforms.api import auto_mode

xp = xd.numpy

A = np.array([[0.3 + 0.1j, -0.2 + 0.4j, 0.1 - 0.3j],
              [0.5 - 0.2j, 0.2 + 0.1j, -0.4 + 0.2j]])


def holo(z):
    """A holomorphic map C^3 -> C^2 that mixes positions."""
    return xp.exp(A @ z) * (A @ (z * z))


def _z(*shape, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal(shape) * 0.5 + 1j * r.standard_normal(shape) * 0.5


def _fd_complex(f, z, direction):
    """d f / dz by central differences along ``direction`` (1 or 1j): equal for a
    holomorphic f."""
    h = 1e-6 * direction
    cols = []
    for i in range(z.size):
        e = np.zeros(z.size, dtype=complex)
        e[i] = h
        cols.append((f(z + e) - f(z - e)) / (2 * h))
    return np.stack(cols, axis=-1)


def _holo_np(z):
    return np.exp(A @ z) * (A @ (z * z))


@pytest.mark.parametrize("direction", [1.0, 1.0j])
def test_holomorphic_jacobians_agree_with_each_other_and_finite_differences(direction):
    z = _z(3)
    fd = _fd_complex(_holo_np, z, direction)
    for jac in (xd.jacfwd, xd.jacrev, xd.jacobian):
        np.testing.assert_allclose(jac(holo, holomorphic=True)(z), fd, rtol=1e-7, atol=1e-9)
    for mode in ("fwd", "rev"):
        np.testing.assert_allclose(xd.jacobian(holo, mode=mode, holomorphic=True)(z), fd,
                                   rtol=1e-7, atol=1e-9)


def test_holomorphic_per_sample_jacobians_and_hessian():
    zs = _z(4, 3, seed=1)
    batched = lambda z: xp.exp(z @ A.T) * ((z * z) @ A.T)
    want = np.stack([_fd_complex(_holo_np, z, 1.0) for z in zs])
    for jac in (xd.jacfwd, xd.jacrev, xd.jacobian):
        np.testing.assert_allclose(jac(batched, batch_ndim=1, holomorphic=True)(zs), want,
                                   rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(xd.vmap(xd.jacfwd(holo, holomorphic=True))(zs), want,
                               rtol=1e-7, atol=1e-9)
    # the Hessian of a holomorphic scalar: f''(z), here of sum(z^3) + z0 z1
    f = lambda z: xp.sum(z ** 3, axis=-1) + z[..., 0] * z[..., 1]
    H = xd.hessian(f, batch_ndim=1, holomorphic=True)(zs)
    want_h = np.stack([np.diag(6 * z) + np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]]) for z in zs])
    np.testing.assert_allclose(H, want_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xd.hessian(f, holomorphic=True)(zs[0]), want_h[0], rtol=1e-12)


def test_grad_holomorphic_is_the_complex_derivative():
    z = _z(3, seed=2)
    g = xd.grad(lambda z: xp.sum(xp.exp(z) * z), holomorphic=True)(z)
    np.testing.assert_allclose(g, np.exp(z) * (1 + z), rtol=1e-12)
    v, g2 = xd.value_and_grad(lambda z: xp.sum(z ** 2), holomorphic=True)(z)
    np.testing.assert_allclose(g2, 2 * z, rtol=1e-12)


def test_real_function_of_complex_input_follows_grads_convention():
    # f: C^2 -> R^5 (more outputs than inputs: the size rule alone would pick forward
    # mode, which differentiates along real directions only)
    B = np.arange(10.0).reshape(5, 2) / 10

    def f(z):
        return B @ (xp.real(z) ** 2 * xp.imag(z)) + xp.abs(z[0]) ** 2

    z = np.array([0.3 + 0.7j, -1.1 + 0.2j])

    def f_np(a, b):
        zz = a + 1j * b
        return B @ (zz.real ** 2 * zz.imag) + abs(zz[0]) ** 2

    eps = 1e-6
    want = []
    for i in range(2):
        e = np.zeros(2)
        e[i] = eps
        da = (f_np(z.real + e, z.imag) - f_np(z.real - e, z.imag)) / (2 * eps)
        db = (f_np(z.real, z.imag + e) - f_np(z.real, z.imag - e)) / (2 * eps)
        want.append(da - 1j * db)  # df/da - i df/db
    want = np.stack(want, axis=-1)
    np.testing.assert_allclose(xd.jacrev(f)(z), want, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(xd.jacobian(f)(z), want, rtol=1e-7, atol=1e-9)
    assert auto_mode(f, (z,)) == "rev"
    # the gradient of one real output is a row of it
    np.testing.assert_allclose(xd.grad(lambda z: f(z)[3])(z), want[3], rtol=1e-7, atol=1e-9)
    # per sample, too
    zs = np.stack([z, z * 0.5])
    fb = lambda z: (xp.real(z) ** 2 * xp.imag(z)) @ B.T + xp.abs(z[:, :1]) ** 2
    np.testing.assert_allclose(xd.jacobian(fb, batch_ndim=1)(zs)[0], want, rtol=1e-7, atol=1e-9)


def test_complex_function_of_real_input_is_forward_mode():
    # R^6 -> C^2 (more inputs than outputs: the size rule alone would pick reverse mode,
    # which would keep only the real part)
    W = np.arange(12.0).reshape(2, 6) / 10
    f = lambda x: (W @ x) * (1.0 + 2.0j) + xp.sin(W @ x) * 1j
    x = np.linspace(-1, 1, 6)
    want = (1.0 + 2.0j) * W + 1j * np.cos(W @ x)[:, None] * W
    np.testing.assert_allclose(xd.jacfwd(f)(x), want, rtol=1e-12)
    np.testing.assert_allclose(xd.jacobian(f)(x), want, rtol=1e-12)
    assert auto_mode(f, (x,)) == "fwd"


def test_vjp_is_the_transpose_for_the_real_pairing():
    # for any f (holomorphic or not): Re <c, J dz> = Re <vjp(c), dz>, with <a, b> = sum(a * b)
    f = lambda z: xp.conj(z) * z[::-1] + xp.exp(z) * xp.real(z)
    z, dz, c = _z(3, seed=3), _z(3, seed=4), _z(3, seed=5)
    _, t = xd.jvp(f, (z,), (dz,))
    _, pull = xd.vjp(f, z)
    (ct,) = pull(c)
    np.testing.assert_allclose(np.real(np.sum(c * t)), np.real(np.sum(ct * dz)), rtol=1e-12)


def test_vjp_refuses_a_complex_cotangent_of_a_real_output():
    # its imaginary part would be dropped silently (JAX raises too); a real one of a
    # complex output is refused as well (JAX's rule: the output's dtype)
    _, pull = xd.vjp(lambda z: xp.abs(z) ** 2, _z(3))
    with pytest.raises(ValueError, match=r"^vjp: the cotangent of out has shape \(3,\) and dtype "
                                         r"complex128, but out has shape \(3,\) and dtype float64"):
        pull(_z(3, seed=1))
    _, pull = xd.vjp(lambda x: x * (1.0 + 2.0j), np.ones(3))
    with pytest.raises(ValueError, match=r"cast it with xp.astype\(g, xp.complex128\)"):
        pull(np.ones(3))
    np.testing.assert_allclose(pull(np.ones(3, complex))[0], np.ones(3))  # real(c * (1 + 2i))
    x = xd.DiffArray(np.ones(3))
    with pytest.raises(ValueError, match=r"^DiffArray.to: the cotangent has dtype complex128, but y "
                                         r"has dtype float64"):
        (x * 2.0).to(x, cotangent=_z(3))


NONHOLO = lambda z: xp.conj(z) * z  # noqa: E731


@pytest.mark.parametrize("call, match", [
    (lambda: xd.jacfwd(NONHOLO)(_z(2)),
     r"^jacfwd: argument 0 is complex \(complex128\); jacfwd differentiates real inputs unless "
     r"told holomorphic=True .* pass holomorphic=True; otherwise use jacrev"),
    (lambda: xd.jacrev(NONHOLO)(_z(2)),
     r"^jacrev: the output of f is complex \(complex128\); jacrev differentiates real outputs "
     r"unless told holomorphic=True .* pass holomorphic=True; otherwise use jacfwd"),
    (lambda: xd.jacobian(NONHOLO)(_z(2)),
     r"^jacobian: argument 0 and the output of f are complex; .* pass holomorphic=True"),
    (lambda: xd.hessian(lambda z: xp.sum(xp.abs(z) ** 2))(_z(2)),
     r"^hessian: argument 0 is complex .* pass holomorphic=True"),
    (lambda: xd.jacfwd(lambda x, z: x * z, argnums=(0, 1))(np.ones(2), _z(2)),
     r"^jacfwd: argument 1 is complex"),
    (lambda: xd.jacrev(lambda x: {"a": x * 1j, "b": x}, batch_ndim=1)(np.ones((3, 2))),
     r"^jacrev: output 0 of f is complex"),
    (lambda: xd.jacfwd(NONHOLO, batch_ndim=1)(_z(3, 2)),
     r"^jacfwd: argument 0 is complex"),
    (lambda: xd.vmap(xd.jacfwd(NONHOLO))(_z(3, 2)), r"^jacfwd: argument 0 is complex"),
    (lambda: xd.jacrev(holo, holomorphic=True)(np.ones(3)),
     r"^jacrev\(holomorphic=True\): argument 0 has dtype float64, but holomorphic=True "
     r"differentiates complex inputs and outputs only .* xp.astype\(x, xp.complex128\)"),
    (lambda: xd.jacfwd(lambda z: xp.real(z), holomorphic=True)(_z(2)),
     r"^jacfwd\(holomorphic=True\): the output of f has dtype float64"),
    (lambda: xd.grad(lambda z: xp.sum(z * z))(_z(2)),
     r"^grad: f returned a complex scalar .* pass holomorphic=True"),
    (lambda: xd.grad(lambda x: xp.sum(x), holomorphic=True)(np.ones(2)),
     r"^grad\(holomorphic=True\): argument 0 has dtype float64"),
    (lambda: xd.jacfwd(holo, holomorphic=1)(_z(3)), r"^jacfwd: holomorphic must be True or False"),
])
def test_refusals_name_the_transform_the_argument_and_the_fix(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_eager_diffarray_follows_grad_and_jacrev():
    z = np.array([0.3 + 0.7j, -1.1 + 0.2j])
    x = xd.DiffArray(z)
    ns = x.__array_namespace__()
    y = ns.real(x) ** 2 * ns.imag(x)
    f = lambda z: xp.real(z) ** 2 * xp.imag(z)
    np.testing.assert_allclose(y.to(x, jacobian=True).value, xd.jacrev(f)(z), rtol=1e-12)
    np.testing.assert_allclose(y.to(x).value, xd.grad(lambda z: xp.sum(f(z)))(z), rtol=1e-12)
    w = x * x
    with pytest.raises(TypeError, match=r"^DiffArray.to: y is complex .* jacobian=True needs a real y"):
        w.to(x, jacobian=True)
    with pytest.raises(TypeError, match=r"^DiffArray.to: y is complex .* gradient of sum\(y\)"):
        w.to(x)
    # an explicit cotangent is a vector-Jacobian product, as xd.vjp
    np.testing.assert_allclose(w.to(x, cotangent=np.ones(2, complex)).value, 2 * z, rtol=1e-12)
    xb = xd.DiffArray(np.ones((3, 2)), batch_ndim=1)
    with pytest.raises(TypeError, match=r"complex x without data dims is not supported"):
        ns.real(xb * x).to(x, jacobian=True)


PUBLIC = {"jvp": xd.jvp, "vjp": xd.vjp, "vmap": xd.vmap, "grad": xd.grad,
          "value_and_grad": xd.value_and_grad, "jacfwd": xd.jacfwd, "jacrev": xd.jacrev,
          "jacobian": xd.jacobian, "hessian": xd.hessian, "jit": xd.jit, "DiffArray": xd.DiffArray,
          "custom_jvp": xd.custom_jvp, "custom_vjp": xd.custom_vjp}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_transform_documents_its_complex_convention(name):
    assert "Complex numbers (docs/complex.md)" in " ".join(PUBLIC[name].__doc__.split())


def test_the_complex_page_has_a_row_for_every_transform():
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "complex.md")
    with open(path, encoding="utf-8") as fh:
        firsts = " ".join(line.split("|")[1] for line in fh if line.startswith("| `"))
    assert [n for n in PUBLIC if f"`{n}`" not in firsts and n != "DiffArray"] == []
    assert "`DiffArray`" in firsts


def test_jvp_is_the_derivative_along_a_real_direction():
    f = lambda z: xp.conj(z) * z * z + xp.abs(z)  # not holomorphic
    z, dz = _z(3, seed=6), _z(3, seed=7)
    _, t = xd.jvp(f, (z,), (dz,))
    h = 1e-6
    fd = (f(z + h * dz) - f(z - h * dz)) / (2 * h)
    np.testing.assert_allclose(t, fd, rtol=1e-8)
    _, t = xd.jvp(holo, (z,), (dz,))  # holomorphic: f'(z) dz
    np.testing.assert_allclose(t, xd.jacfwd(holo, holomorphic=True)(z) @ dz, rtol=1e-12)


def test_vmap_follows_the_mapped_transform_per_example():
    zs = _z(4, 3, seed=8)
    f = lambda z: xp.sum(xp.real(z) ** 2 * xp.imag(z))
    np.testing.assert_allclose(xd.vmap(xd.grad(f))(zs), np.stack([xd.grad(f)(z) for z in zs]),
                               rtol=1e-14)
    with pytest.raises(TypeError, match=r"^grad: f returned a complex scalar"):
        xd.vmap(xd.grad(lambda z: xp.sum(z * z)))(zs)


def test_custom_rules_follow_jvp_and_vjp():
    z = _z(3, seed=9)

    @xd.custom_jvp
    def sq_abs(z):
        return xp.real(z * xp.conj(z))

    @sq_abs.defjvp
    def _(primals, tangents):  # real-linear: uses conj(t)
        (z,), (t,) = primals, tangents
        return sq_abs(z), xp.real(xp.conj(z) * t + z * xp.conj(t))

    np.testing.assert_allclose(xd.jacrev(sq_abs)(z), np.diag(2 * np.conj(z)), rtol=1e-14)

    @xd.custom_vjp
    def cube(z):
        return z ** 3

    cube.defvjp(lambda z: (z ** 3, z), lambda z, g: (g * 3 * z ** 2,))  # no conjugation
    np.testing.assert_allclose(xd.jacrev(cube, holomorphic=True)(z), np.diag(3 * z ** 2), rtol=1e-14)
    np.testing.assert_allclose(xd.vjp(cube, z)[1](z)[0], xd.vjp(lambda z: z ** 3, z)[1](z)[0],
                               rtol=1e-14)


def test_jit_keeps_the_convention_of_what_it_compiles():
    z = _z(3, seed=10)
    g = xd.jit(xd.grad(lambda z: xp.sum(xp.abs(z) ** 2)))
    for w in (z, 2 * z):  # traced, then replayed
        np.testing.assert_allclose(g(w), 2 * np.conj(w), rtol=1e-14)
    refused = xd.jit(xd.jacfwd(NONHOLO))
    for _ in range(2):
        with pytest.raises(TypeError, match=r"^jacfwd: argument 0 is complex"):
            refused(z)
