"""Benchmark workloads: one math body per workload, adapted to every peer.

Each workload's mathematics is written once as ``body(xp, *arrays)`` against
a small array-API subset (``sin, exp, tanh, log, matmul, sum, max`` and the
arithmetic operators).  ``xp`` is the xpdiff namespace (``x.__array_namespace__()``),
``jax.numpy``, ``autograd.numpy``, NumPy, or :class:`~xpdiff.bench.peers.TorchOps`.

For every peer a *builder* turns the NumPy inputs into a zero-argument thunk
that performs one timed call.  Input conversion, tracing set-up and building
the transformed functions happen in the builder, outside the timed region.

Conventions
-----------
* Small sizes use float64, large sizes float32, identically for all peers.
* Per-sample Jacobians have layout ``B + Y + X`` for every peer (xpdiff's
  ``batch_ndim`` layout equals ``vmap(jacfwd(f))``).
* xpdiff is given the *batched* function and ``batch_ndim=1``; JAX and
  torch.func get the *per-sample* function under ``vmap``; array constants
  are passed to JAX/torch as un-mapped arguments (``in_axes=None``) so that
  ``jax.jit`` cannot fold them, and closed over for xpdiff and autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import closed
from .peers import Runtime

Thunk = Callable[[], Any]
Builder = Callable[[Runtime, str, dict[str, np.ndarray]], Thunk]
Body = Callable[..., Any]

SIZES: tuple[str, ...] = ("small", "large")
DTYPES: dict[str, type] = {"small": np.float64, "large": np.float32}


@dataclass
class Workload:
    """One benchmark case: a derivative computation at one size.

    Attributes
    ----------
    name:
        short identifier, e.g. ``"elementwise-jac"``.
    size:
        ``"small"`` or ``"large"``.
    description:
        what is differentiated, for the report.
    shapes:
        human-readable problem sizes.
    make_inputs:
        ``rng -> {name: ndarray}``; all peers receive these same arrays.
    builders:
        peer name -> builder; peers without a builder are "n/a".
    notes:
        peer name -> how that peer computes it, when notable.
    primitives:
        number of primitive operations (overhead workload only).
    """

    name: str
    size: str
    description: str
    shapes: str
    dtype: str
    make_inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]
    builders: dict[str, Builder]
    notes: dict[str, str] = field(default_factory=dict)
    primitives: int | None = None

    @property
    def key(self) -> str:
        """``name/size``."""
        return f"{self.name}/{self.size}"


# --------------------------------------------------------------------- bodies
def elementwise(xp: Any, x: Any) -> Any:
    """``sin(x) * exp(x) + x**2``."""
    return xp.sin(x) * xp.exp(x) + x**2


def mlp(xp: Any, x: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
    """Two-layer perceptron with a tanh hidden layer."""
    return xp.matmul(xp.tanh(xp.matmul(x, w1) + b1), w2) + b2


def bmm(xp: Any, u: Any, v: Any) -> Any:
    """Batched matrix product ``u @ v``."""
    return xp.matmul(u, v)


def softmax(xp: Any, x: Any) -> Any:
    """Numerically stabilised softmax over the last axis."""
    z = x - xp.max(x, axis=-1, keepdims=True)
    e = xp.exp(z)
    return e / xp.sum(e, axis=-1, keepdims=True)


def mixing_map(xp: Any, x: Any, a: Any) -> Any:
    """``tanh(A @ x) + x``: R^n -> R^n with a dense Jacobian."""
    return xp.tanh(xp.matmul(a, x)) + x


def logistic_objective(xp: Any, x: Any, a: Any) -> Any:
    """``sum(log(1 + exp(A @ x))) + |x|^2 / 2``."""
    z = xp.matmul(a, x)
    return xp.sum(xp.log(1.0 + xp.exp(z))) + 0.5 * xp.sum(x * x)


def mlp_loss(xp: Any, w1: Any, b1: Any, w2: Any, b2: Any, x: Any, y: Any) -> Any:
    """Half sum of squared errors of :func:`mlp` on a data batch."""
    r = mlp(xp, x, w1, b1, w2, b2) - y
    return 0.5 * xp.sum(r * r)


def per_sample_loss(xp: Any, x: Any, w: Any) -> Any:
    """``0.5 * sum(tanh(x @ W)**2, axis=-1)``: one loss per sample."""
    h = xp.tanh(xp.matmul(x, w))
    return 0.5 * xp.sum(h * h, axis=-1)


CHAIN_LENGTH = closed.CHAIN_LENGTH


def chain(xp: Any, x: Any) -> Any:
    """``CHAIN_LENGTH`` primitives: alternating sin / mul / add, then a sum."""
    y = x
    for i in range(CHAIN_LENGTH - 1):
        k = i % 3
        if k == 0:
            y = xp.sin(y)
        elif k == 1:
            y = y * 1.001
        else:
            y = y + 0.1
    return xp.sum(y)


# ----------------------------------------------------------------- helpers
def _xpdiff_namespace(*arrays: Any) -> Any:
    """Namespace of the first traced argument (plain arrays give numpy/cupy)."""
    spaces = [a.__array_namespace__() for a in arrays if hasattr(a, "__array_namespace__")]
    for space in spaces:
        if getattr(space, "__name__", "").split(".")[0] not in ("numpy", "cupy"):
            return space
    return spaces[0] if spaces else np


def _put_all(rt: Runtime, peer: str, inputs: dict[str, np.ndarray], names: Sequence[str]) -> list:
    return [rt.put(peer, inputs[n]) for n in names]


def _xpdiff_transform(rt: Runtime, peer: str) -> tuple[Any, Callable[[Any], Any]]:
    """(xpdiff, finaliser) where the finaliser stages with ``xpdiff.jit`` for ``xpdiff-jit``."""
    xd = rt.get(peer)
    return xd, (xd.jit if peer == "xpdiff-jit" else (lambda fn: fn))


def _jax_transform(rt: Runtime, peer: str) -> tuple[Any, Any, Callable[[Any], Any]]:
    """(jax, jax.numpy, finaliser) where the finaliser jits for ``jax-jit``."""
    handle = rt.get(peer)
    jax = handle["jax"]
    finish = jax.jit if peer == "jax-jit" else (lambda fn: fn)
    return jax, handle["jnp"], finish


# ------------------------------------------------------------ builder kits
def per_sample_jacobian(
    body: Body, batched: Sequence[str], consts: Sequence[str], mode: str
) -> dict[str, Builder]:
    """Builders for ``d body / d batched[0]`` per sample (leading axis)."""
    nb, nc = len(batched), len(consts)

    def xpdiff_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        xd, finish = _xpdiff_transform(rt, peer)
        bargs = _put_all(rt, peer, inputs, batched)
        cargs = _put_all(rt, peer, inputs, consts)

        def f(*args: Any) -> Any:
            return body(_xpdiff_namespace(*args), *args, *cargs)

        jac = finish(xd.jacobian(f, argnums=0, batch_ndim=1))
        return lambda: jac(*bargs)

    def jax_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        jax, jnp, finish = _jax_transform(rt, peer)
        jac = (jax.jacfwd if mode == "fwd" else jax.jacrev)(lambda *args: body(jnp, *args), argnums=0)
        fn = finish(jax.vmap(jac, in_axes=(0,) * nb + (None,) * nc))
        args = _put_all(rt, peer, inputs, [*batched, *consts])
        return lambda: fn(*args)

    def torch_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        func, ops = handle["func"], handle["ops"]
        jac = (func.jacfwd if mode == "fwd" else func.jacrev)(lambda *args: body(ops, *args), argnums=0)
        fn = func.vmap(jac, in_dims=(0,) * nb + (None,) * nc)
        args = _put_all(rt, peer, inputs, [*batched, *consts])
        return lambda: fn(*args)

    def autograd_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        anp, ops = handle["np"], handle["ops"]
        bargs = [inputs[n] for n in batched]
        cargs = [inputs[n] for n in consts]
        y_ndim = np.ndim(body(np, *bargs, *cargs)) - 1

        # Samples are independent, so d(sum_b f(x)_b)/dx_b is sample b's
        # Jacobian: one jacobian call of the batch-summed function.
        def summed(x0: Any) -> Any:
            return anp.sum(body(anp, x0, *bargs[1:], *cargs), axis=0)

        jac = ops.jacobian(summed)
        return lambda: np.moveaxis(jac(bargs[0]), y_ndim, 0)

    return {
        "xpdiff": xpdiff_builder,
        "xpdiff-jit": xpdiff_builder,
        "jax": jax_builder,
        "jax-jit": jax_builder,
        "torch": torch_builder,
        "autograd": autograd_builder,
    }


_AUTOGRAD_SUM_TRICK = (
    "autograd.jacobian of the batch-summed function (Python loop over the "
    "per-sample output entries inside autograd), moved to B+Y+X"
)


def full_jacobian(body: Body, consts: Sequence[str], mode: str) -> dict[str, Builder]:
    """Builders for the dense Jacobian of ``body(x, *consts)`` in ``mode``."""

    def xpdiff_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        xd, finish = _xpdiff_transform(rt, peer)
        x = rt.put(peer, inputs["x"])
        cargs = _put_all(rt, peer, inputs, consts)
        transform = xd.jacfwd if mode == "fwd" else xd.jacrev
        jac = finish(transform(lambda x: body(_xpdiff_namespace(x), x, *cargs)))
        return lambda: jac(x)

    def jax_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        jax, jnp, finish = _jax_transform(rt, peer)
        transform = jax.jacfwd if mode == "fwd" else jax.jacrev
        fn = finish(transform(lambda *args: body(jnp, *args), argnums=0))
        args = _put_all(rt, peer, inputs, ["x", *consts])
        return lambda: fn(*args)

    def torch_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        func, ops = handle["func"], handle["ops"]
        transform = func.jacfwd if mode == "fwd" else func.jacrev
        fn = transform(lambda *args: body(ops, *args), argnums=0)
        args = _put_all(rt, peer, inputs, ["x", *consts])
        return lambda: fn(*args)

    def autograd_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        anp, ops = handle["np"], handle["ops"]
        x = inputs["x"]
        cargs = [inputs[n] for n in consts]

        def f(x: Any) -> Any:
            return body(anp, x, *cargs)

        if mode == "rev":
            jac = ops.jacobian(f)
            return lambda: jac(x)
        basis = np.eye(x.size, dtype=x.dtype)
        jvp = ops.make_jvp(f)

        def fwd() -> np.ndarray:
            push = jvp(x)
            return np.stack([push(e)[1] for e in basis], axis=-1)

        return fwd

    return {
        "xpdiff": xpdiff_builder,
        "xpdiff-jit": xpdiff_builder,
        "jax": jax_builder,
        "jax-jit": jax_builder,
        "torch": torch_builder,
        "autograd": autograd_builder,
    }


def hessian_kit(body: Body, consts: Sequence[str]) -> dict[str, Builder]:
    """Builders for the Hessian of the scalar ``body(x, *consts)``."""

    def xpdiff_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        xd, finish = _xpdiff_transform(rt, peer)
        x = rt.put(peer, inputs["x"])
        cargs = _put_all(rt, peer, inputs, consts)
        hess = finish(xd.hessian(lambda x: body(_xpdiff_namespace(x), x, *cargs)))
        return lambda: hess(x)

    def jax_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        jax, jnp, finish = _jax_transform(rt, peer)
        fn = finish(jax.hessian(lambda *args: body(jnp, *args), argnums=0))
        args = _put_all(rt, peer, inputs, ["x", *consts])
        return lambda: fn(*args)

    def torch_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        func, ops = handle["func"], handle["ops"]
        fn = func.hessian(lambda *args: body(ops, *args), argnums=0)
        args = _put_all(rt, peer, inputs, ["x", *consts])
        return lambda: fn(*args)

    def autograd_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        anp, ops = handle["np"], handle["ops"]
        cargs = [inputs[n] for n in consts]
        hess = ops.hessian(lambda x: body(anp, x, *cargs))
        return lambda: hess(inputs["x"])

    return {
        "xpdiff": xpdiff_builder,
        "xpdiff-jit": xpdiff_builder,
        "jax": jax_builder,
        "jax-jit": jax_builder,
        "torch": torch_builder,
        "autograd": autograd_builder,
    }


def gradient_kit(body: Body, params: Sequence[str], consts: Sequence[str]) -> dict[str, Builder]:
    """Builders for the gradient of ``body(*params, *consts)`` w.r.t. all params."""
    argnums = tuple(range(len(params)))

    def xpdiff_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        xd, finish = _xpdiff_transform(rt, peer)
        pargs = _put_all(rt, peer, inputs, params)
        cargs = _put_all(rt, peer, inputs, consts)

        def f(*ps: Any) -> Any:
            return body(_xpdiff_namespace(*ps), *ps, *cargs)

        grad = finish(xd.grad(f, argnums=argnums))
        return lambda: grad(*pargs)

    def jax_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        jax, jnp, finish = _jax_transform(rt, peer)
        fn = finish(jax.grad(lambda *args: body(jnp, *args), argnums=argnums))
        args = _put_all(rt, peer, inputs, [*params, *consts])
        return lambda: fn(*args)

    def torch_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        func, ops = handle["func"], handle["ops"]
        fn = func.grad(lambda *args: body(ops, *args), argnums=argnums)
        args = _put_all(rt, peer, inputs, [*params, *consts])
        return lambda: fn(*args)

    def autograd_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        anp, ops = handle["np"], handle["ops"]
        pargs = tuple(inputs[n] for n in params)
        cargs = [inputs[n] for n in consts]
        grad = ops.grad(lambda ps: body(anp, *ps, *cargs))
        return lambda: grad(pargs)

    return {
        "xpdiff": xpdiff_builder,
        "xpdiff-jit": xpdiff_builder,
        "jax": jax_builder,
        "jax-jit": jax_builder,
        "torch": torch_builder,
        "autograd": autograd_builder,
    }


def per_sample_gradient(body: Body) -> dict[str, Builder]:
    """Builders for per-sample gradients of ``body(x, W)`` w.r.t. the shared ``W``."""

    def xpdiff_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        xd, finish = _xpdiff_transform(rt, peer)
        x, w = rt.put(peer, inputs["x"]), rt.put(peer, inputs["w"])
        jac = finish(xd.jacobian(lambda x, w: body(_xpdiff_namespace(w, x), x, w), argnums=1,
                                 batch_ndim=1))
        return lambda: jac(x, w)

    def jax_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        jax, jnp, finish = _jax_transform(rt, peer)
        grad = jax.grad(lambda x, w: body(jnp, x, w), argnums=1)
        fn = finish(jax.vmap(grad, in_axes=(0, None)))
        x, w = rt.put(peer, inputs["x"]), rt.put(peer, inputs["w"])
        return lambda: fn(x, w)

    def torch_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        func, ops = handle["func"], handle["ops"]
        grad = func.grad(lambda x, w: body(ops, x, w), argnums=1)
        fn = func.vmap(grad, in_dims=(0, None))
        x, w = rt.put(peer, inputs["x"]), rt.put(peer, inputs["w"])
        return lambda: fn(x, w)

    def autograd_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        anp, ops = handle["np"], handle["ops"]
        grad = ops.grad(lambda x, w: body(anp, x, w), 1)
        x, w = inputs["x"], inputs["w"]
        return lambda: np.stack([grad(xi, w) for xi in x])

    return {
        "xpdiff": xpdiff_builder,
        "xpdiff-jit": xpdiff_builder,
        "jax": jax_builder,
        "jax-jit": jax_builder,
        "torch": torch_builder,
        "autograd": autograd_builder,
    }


def overhead_kit(body: Body) -> dict[str, Builder]:
    """Builders for ``grad(body)(x)`` on a tiny ``x``, plus forward-only NumPy."""

    def xpdiff_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        xd, finish = _xpdiff_transform(rt, peer)
        x = rt.put(peer, inputs["x"])
        grad = finish(xd.grad(lambda x: body(_xpdiff_namespace(x), x)))
        return lambda: grad(x)

    def jax_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        jax, jnp, finish = _jax_transform(rt, peer)
        fn = finish(jax.grad(lambda x: body(jnp, x)))
        x = rt.put(peer, inputs["x"])
        return lambda: fn(x)

    def torch_func_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        func, ops = handle["func"], handle["ops"]
        fn = func.grad(lambda x: body(ops, x))
        x = rt.put(peer, inputs["x"])
        return lambda: fn(x)

    def torch_backward_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        ops = handle["ops"]
        x = rt.put(peer, inputs["x"]).requires_grad_(True)

        def call() -> Any:
            x.grad = None
            body(ops, x).backward()
            return x.grad

        return call

    def autograd_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        handle = rt.get(peer)
        anp, ops = handle["np"], handle["ops"]
        grad = ops.grad(lambda x: body(anp, x))
        return lambda: grad(inputs["x"])

    def numpy_builder(rt: Runtime, peer: str, inputs: dict[str, np.ndarray]) -> Thunk:
        xp = rt.get(peer)
        x = rt.put(peer, inputs["x"])
        return lambda: body(xp, x)

    return {
        "xpdiff": xpdiff_builder,
        "xpdiff-jit": xpdiff_builder,
        "jax": jax_builder,
        "jax-jit": jax_builder,
        "torch": torch_func_builder,
        "torch-backward": torch_backward_builder,
        "autograd": autograd_builder,
        "numpy-fwd": numpy_builder,
    }


# ------------------------------------------------------------------ inputs
def _normal(rng: np.random.Generator, dtype: type, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _weights(rng: np.random.Generator, dtype: type, fan_in: int, fan_out: int) -> np.ndarray:
    return _normal(rng, dtype, fan_in, fan_out, scale=1.0 / np.sqrt(fan_in))


# --------------------------------------------------------------- catalogue
_PARAMS: dict[str, dict[str, dict[str, int]]] = {
    "elementwise-jac": {"small": {"B": 16, "N": 16}, "large": {"B": 256, "N": 64}},
    "mlp-jac": {
        "small": {"B": 16, "Nin": 12, "H": 16, "Nout": 8},
        "large": {"B": 512, "Nin": 64, "H": 256, "Nout": 32},
    },
    "bmm-jac": {
        "small": {"D": 8, "M": 4, "N": 4, "P": 4},
        "large": {"D": 32, "M": 16, "N": 16, "P": 16},
    },
    "softmax-jac": {"small": {"B": 16, "N": 16}, "large": {"B": 256, "N": 64}},
    "full-jac-fwd": {"small": {"n": 16}, "large": {"n": 512}},
    "full-jac-rev": {"small": {"n": 16}, "large": {"n": 512}},
    "hessian": {"small": {"n": 16, "m": 32}, "large": {"n": 256, "m": 1024}},
    "mlp-grad": {
        "small": {"B": 32, "Nin": 8, "H": 16, "Nout": 4},
        "large": {"B": 2048, "Nin": 128, "H": 256, "Nout": 32},
    },
    "per-sample-grad": {
        "small": {"B": 16, "N": 8, "H": 8},
        "large": {"B": 512, "N": 64, "H": 64},
    },
    "overhead": {"small": {"N": 8}},
}


def _shape_text(params: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def make_workload(name: str, size: str, dtype: str | None = None,
                  params: dict[str, int] | None = None) -> Workload:
    """Build the workload ``name`` at ``size`` (see :data:`WORKLOAD_NAMES`), with the
    hand-written NumPy closed form of its derivative as the ``numpy-closed`` peer.

    ``dtype`` and ``params`` as in :func:`_make_workload`.
    """
    w = _make_workload(name, size, dtype, params)
    build = closed.builder(name)
    if build is not None:
        w.builders.setdefault("numpy-closed", build)
        w.notes.setdefault("numpy-closed", "hand-written NumPy closed form of the derivative")
    return w


def _make_workload(name: str, size: str, dtype: str | None = None,
                   params: dict[str, int] | None = None) -> Workload:
    """Build the workload ``name`` at ``size`` (see :data:`WORKLOAD_NAMES`).

    ``dtype`` (``"float32"``/``"float64"``) replaces the size's dtype; ``params``
    replaces the size's parameters (``size="gpu"`` takes them from
    :func:`~xpdiff.bench.gpu.gpu_params`).
    """
    p = _PARAMS[name][size] if params is None else params
    if dtype is not None:
        dtype = np.dtype(dtype).type
    else:
        dtype = np.float64 if name == "overhead" else DTYPES[size]
    dname = np.dtype(dtype).name
    common = {"name": name, "size": size, "shapes": _shape_text(p), "dtype": dname}

    if name == "elementwise-jac":
        return Workload(
            description="per-sample Jacobian of sin(x)*exp(x)+x**2, x (B, N)",
            make_inputs=lambda rng: {"x": _normal(rng, dtype, p["B"], p["N"], scale=0.5)},
            builders=per_sample_jacobian(elementwise, ["x"], [], "fwd"),
            notes={"autograd": _AUTOGRAD_SUM_TRICK},
            **common,
        )
    if name == "mlp-jac":
        mode = "rev" if p["Nout"] < p["Nin"] else "fwd"
        return Workload(
            description=f"per-sample Jacobian of a tanh MLP, x (B, Nin) -> (B, Nout); "
            f"JAX/torch use vmap(jac{mode})",
            make_inputs=lambda rng: {
                "x": _normal(rng, dtype, p["B"], p["Nin"]),
                "w1": _weights(rng, dtype, p["Nin"], p["H"]),
                "b1": _normal(rng, dtype, p["H"], scale=0.1),
                "w2": _weights(rng, dtype, p["H"], p["Nout"]),
                "b2": _normal(rng, dtype, p["Nout"], scale=0.1),
            },
            builders=per_sample_jacobian(mlp, ["x"], ["w1", "b1", "w2", "b2"], mode),
            notes={"autograd": _AUTOGRAD_SUM_TRICK},
            **common,
        )
    if name == "bmm-jac":
        return Workload(
            description="per-sample Jacobian of u @ v w.r.t. u; u (D,M,N), v (D,N,P)",
            make_inputs=lambda rng: {
                "u": _normal(rng, dtype, p["D"], p["M"], p["N"]),
                "v": _normal(rng, dtype, p["D"], p["N"], p["P"]),
            },
            builders=per_sample_jacobian(bmm, ["u", "v"], [], "fwd"),
            notes={"autograd": _AUTOGRAD_SUM_TRICK},
            **common,
        )
    if name == "softmax-jac":
        return Workload(
            description="per-sample Jacobian of softmax over the last axis, x (B, N)",
            make_inputs=lambda rng: {"x": _normal(rng, dtype, p["B"], p["N"])},
            builders=per_sample_jacobian(softmax, ["x"], [], "fwd"),
            notes={"autograd": _AUTOGRAD_SUM_TRICK},
            **common,
        )
    if name in ("full-jac-fwd", "full-jac-rev"):
        mode = name.rsplit("-", 1)[1]
        return Workload(
            description=f"full Jacobian of tanh(A @ x) + x, R^n -> R^n, jac{mode}",
            make_inputs=lambda rng: {
                "x": _normal(rng, dtype, p["n"]),
                "a": _weights(rng, dtype, p["n"], p["n"]),
            },
            builders=full_jacobian(mixing_map, ["a"], mode),
            notes={"autograd": "Python loop of make_jvp over the n basis vectors"} if mode == "fwd" else {},
            **common,
        )
    if name == "hessian":
        return Workload(
            description="Hessian of sum(log(1+exp(A @ x))) + |x|^2/2, A (m, n)",
            make_inputs=lambda rng: {
                "x": _normal(rng, dtype, p["n"]),
                "a": _weights(rng, dtype, p["n"], p["m"]).T.copy(),
            },
            builders=hessian_kit(logistic_objective, ["a"]),
            **common,
        )
    if name == "mlp-grad":
        return Workload(
            description="gradient of a tanh-MLP squared-error loss w.r.t. W1,b1,W2,b2",
            make_inputs=lambda rng: {
                "w1": _weights(rng, dtype, p["Nin"], p["H"]),
                "b1": _normal(rng, dtype, p["H"], scale=0.1),
                "w2": _weights(rng, dtype, p["H"], p["Nout"]),
                "b2": _normal(rng, dtype, p["Nout"], scale=0.1),
                "x": _normal(rng, dtype, p["B"], p["Nin"]),
                "y": _normal(rng, dtype, p["B"], p["Nout"]),
            },
            builders=gradient_kit(mlp_loss, ["w1", "b1", "w2", "b2"], ["x", "y"]),
            **common,
        )
    if name == "per-sample-grad":
        return Workload(
            description="per-sample gradients of 0.5*|tanh(x_b @ W)|^2 "
            "w.r.t. the shared W; "
            "xpdiff: jacobian(argnums=1, batch_ndim=1) on batched code, "
            "JAX/torch: vmap(grad, in_axes=(0, None))",
            make_inputs=lambda rng: {
                "x": _normal(rng, dtype, p["B"], p["N"]),
                "w": _weights(rng, dtype, p["N"], p["H"]),
            },
            builders=per_sample_gradient(per_sample_loss),
            notes={"autograd": "Python loop over the B samples of autograd.grad"},
            **common,
        )
    if name == "overhead":
        return Workload(
            description=f"grad of a chain of {CHAIN_LENGTH} primitives "
            "(sin/mul/add, then sum) on a tiny array",
            make_inputs=lambda rng: {"x": _normal(rng, dtype, p["N"])},
            builders=overhead_kit(chain),
            notes={
                "torch": "torch.func.grad",
                "torch-backward": "plain tensor.backward()",
                "numpy-fwd": "forward pass only, no derivative",
                "jax": "eager, no jit",
            },
            primitives=CHAIN_LENGTH,
            **common,
        )
    raise KeyError(f"unknown workload {name!r}")


#: Every workload name, in report order.
WORKLOAD_NAMES: tuple[str, ...] = tuple(_PARAMS)


def workloads(sizes: Sequence[str] = SIZES, names: Sequence[str] | None = None) -> list[Workload]:
    """All workloads for ``sizes`` (optionally only ``names``), in report order."""
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        raise ValueError(f"unknown size(s) {bad}; choose from {SIZES}")
    selected = WORKLOAD_NAMES if names is None else tuple(names)
    unknown = [n for n in selected if n not in _PARAMS]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; choose from {WORKLOAD_NAMES}")
    return [make_workload(name, size) for size in sizes for name in selected if size in _PARAMS[name]]


def gpu_workloads(result_bytes: int, dtypes: Sequence[str],
                  names: Sequence[str] | None = None) -> list[Workload]:
    """Every workload (or ``names``) at the ``"gpu"`` size, whose largest array takes
    about ``result_bytes`` (see :mod:`xpdiff.bench.gpu`), once per dtype."""
    from .gpu import gpu_params

    selected = WORKLOAD_NAMES if names is None else tuple(names)
    unknown = [n for n in selected if n not in _PARAMS]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; choose from {WORKLOAD_NAMES}")
    return [make_workload(name, "gpu", dt, gpu_params(name, result_bytes, np.dtype(dt).itemsize))
            for dt in dtypes for name in selected]
