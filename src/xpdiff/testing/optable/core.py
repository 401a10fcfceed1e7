"""Core entries: elementwise, reductions, manipulation, indexing, matmul."""

from __future__ import annotations

import xpdiff as xd

from ._op import Op


def _idx(xp, x, vals):
    return xp.asarray(vals, device=x.device)


def _setitem(xp, x, v):
    y = x * 1.0
    y[..., 1:3] = v
    return y


def _setitem_scalar(xp, x):
    y = xp.exp(x)
    y[..., 0] = 2.0
    return y * x


def _inplace_ops(xp, x, y):
    z = x * 1.0
    z += y
    z *= x
    z -= 0.5
    z /= 2.0
    return z


def _through_views(xp, x, y):
    """Writes through views reach the base and the other views (as NumPy's views)."""
    z = x * 1.0
    v = z[..., 1:]
    w = xp.matrix_transpose(z)
    v += x[..., 1:] * y[..., :3]
    w[..., 0, :] = xp.sin(y[..., :, 0])  # z[..., :, 0]
    return z * v[..., :1]


def _sin_times(v):
    return v.__array_namespace__().sin(v) * v


def _softmax(v):
    xp = v.__array_namespace__()
    e = xp.exp(v - xp.max(v, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


S = (3, 4)
V = (4,)

UNARY = {
    "negative": ({}, None), "positive": ({}, None), "abs": ({}, None), "square": ({}, None),
    "sqrt": ({"low": 0.5}, None), "exp": ({}, None), "expm1": ({}, None),
    "log": ({"low": 0.5}, None), "log1p": ({"low": -0.5}, None), "log2": ({"low": 0.5}, None),
    "log10": ({"low": 0.5}, None), "sin": ({}, None), "cos": ({}, None),
    "tan": ({"low": -1.0, "high": 1.0}, None), "asin": ({"low": -0.8, "high": 0.8}, None),
    "acos": ({"low": -0.8, "high": 0.8}, None), "atan": ({}, None), "sinh": ({}, None),
    "cosh": ({}, None), "tanh": ({}, None), "asinh": ({}, None),
    "acosh": ({"low": 1.5, "high": 3.0}, None), "atanh": ({"low": -0.8, "high": 0.8}, None),
    "reciprocal": ({"low": 0.5}, None), "conj": ({}, None), "real": ({}, None),
}

OPS: list[Op] = []
for _name, (_kw, _) in UNARY.items():
    OPS.append(Op(_name, (lambda xp, x, _n=_name: getattr(xp, _n)(x)), (S,), **_kw))

OPS += [
    Op("add", lambda xp, x, y: xp.add(x, y), (S, S)),
    Op("add_broadcast", lambda xp, x, y: x + y, (S, V), batched=False),
    Op("subtract", lambda xp, x, y: x - y, (S, S)),
    Op("multiply", lambda xp, x, y: x * y, (S, V), batched=False),
    Op("divide", lambda xp, x, y: x / y, (S, S), low=(-2.0, 0.5)),
    Op("pow", lambda xp, x, y: x ** y, (S, S), low=(0.5, -1.5), high=(2.0, 2.0)),
    Op("pow_scalar", lambda xp, x: x ** 3 + 2.0 ** x, (S,)),
    Op("maximum", lambda xp, x, y: xp.maximum(x, y), (S, S)),
    Op("minimum", lambda xp, x, y: xp.minimum(x, y), (S, S)),
    Op("atan2", lambda xp, x, y: xp.atan2(x, y), (S, S), low=(0.5, 0.5)),
    Op("hypot", lambda xp, x, y: xp.hypot(x, y), (S, S), low=(0.5, 0.5)),
    Op("logaddexp", lambda xp, x, y: xp.logaddexp(x, y), (S, S)),
    Op("copysign", lambda xp, x, y: xp.copysign(x, y), (S, S)),
    Op("remainder", lambda xp, x, y: xp.remainder(x, y), (S, S), low=(1.2, 0.95),
       high=(1.8, 1.05)),
    Op("where", lambda xp, x, y: xp.where(x > y, x * y, xp.sin(y)), (S, S)),
    Op("clip", lambda xp, x: xp.clip(x, -1.0, 1.0) * x, (S,)),
    Op("nodiff_mix", lambda xp, x: x * xp.astype(xp.floor(x) + xp.sign(x) + xp.round(x)
                                                    + xp.ceil(x) + xp.trunc(x), x.dtype)
       + xp.astype(xp.logical_and(x > 0, xp.logical_not(xp.isnan(x))), x.dtype), (S,)),
    Op("sum", lambda xp, x: xp.sum(x, axis=-1), (S,)),
    Op("sum_keepdims", lambda xp, x: xp.sum(x, axis=(-1, -2), keepdims=True), (S,)),
    Op("prod", lambda xp, x: xp.prod(x, axis=-1), (S,)),
    Op("max", lambda xp, x: xp.max(x, axis=-1), (S,)),
    Op("min", lambda xp, x: xp.min(x, axis=-2, keepdims=True), (S,)),
    Op("mean", lambda xp, x: xp.mean(x, axis=-1), (S,)),
    Op("var", lambda xp, x: xp.var(x, axis=-1, correction=1), (S,)),
    Op("std", lambda xp, x: xp.std(x, axis=-2), (S,)),
    Op("cumulative_sum", lambda xp, x: xp.cumulative_sum(x, axis=-1), (S,)),
    Op("cumulative_sum_init", lambda xp, x: xp.cumulative_sum(x, axis=-2, include_initial=True),
       (S,)),
    Op("argmax_take", lambda xp, x: x * xp.astype(xp.argmax(x, axis=-1, keepdims=True), x.dtype),
       (S,)),
    Op("reshape", lambda xp, x: xp.reshape(x, tuple(x.shape[:-2]) + (2, 6)), (S,)),
    Op("matrix_transpose", lambda xp, x: xp.matrix_transpose(x) * 1.0, (S,)),
    Op("permute_dims", lambda xp, x: xp.permute_dims(x, tuple(range(x.ndim - 3)) + (
        x.ndim - 1, x.ndim - 3, x.ndim - 2)), ((2, 3, 4),)),
    Op("moveaxis", lambda xp, x: xp.moveaxis(x, -1, -2), (S,)),
    Op("expand_squeeze", lambda xp, x: xp.squeeze(xp.expand_dims(x, axis=-1) * x[..., None],
                                                   axis=-1), (S,)),
    Op("broadcast_to", lambda xp, x: xp.broadcast_to(x[..., None], tuple(x.shape) + (2,)), (S,)),
    Op("concat", lambda xp, x, y: xp.concat([x, y, x], axis=-1), (S, S)),
    Op("stack", lambda xp, x, y: xp.stack([x, y], axis=-1), (S, S)),
    Op("flip", lambda xp, x: xp.flip(x, axis=-1), (S,)),
    Op("take", lambda xp, x: xp.take(x, _idx(xp, x, [2, 0, 2]), axis=-1), (S,)),
    Op("getitem", lambda xp, x: x[..., 1:3, ::-1] + x[..., 0:1, 0:1], (S,)),
    Op("getitem_int", lambda xp, x: x[..., 1, None] * x[..., None, -1, :], (S,)),
    Op("setitem", _setitem, (S, (3, 2))),
    Op("setitem_scalar", _setitem_scalar, (S,)),
    Op("inplace_ops", _inplace_ops, (S, S)),
    Op("setitem_through_views", _through_views, (S, S)),
    Op("matmul", lambda xp, x, y: x @ y, ((3, 4), (4, 2))),
    Op("matmul_matvec", lambda xp, x, y: x @ y, ((3, 4), (4,)), batched=False),
    Op("matmul_vecmat", lambda xp, x, y: x @ y, ((4,), (4, 2)), batched=False),
    Op("matmul_stack", lambda xp, x, y: xp.matmul(x, y), ((2, 3, 4), (2, 4, 2))),
    Op("tensordot", lambda xp, x, y: xp.tensordot(x, y, axes=1), ((3, 4), (4, 2)),
       batched=False),
    Op("vecdot", lambda xp, x, y: xp.vecdot(x, y), (S, S)),
    Op("tril_triu", lambda xp, x: xp.tril(x) + xp.triu(x, k=1) * 2.0, ((3, 3),)),
    Op("astype", lambda xp, x: xp.astype(xp.astype(x, xp.float64) * x, x.dtype), (S,)),
    Op("stop_gradient", lambda xp, x: x * (x + xd.stop_gradient(x) - xd.stop_gradient(x)), (S,)),
    Op("zeros_like", lambda xp, x: xp.zeros_like(x) + xp.ones_like(x) * x, (S,)),
    Op("jacobian_of_elementwise", lambda xp, x: xd.jacfwd(_sin_times)(x), (V,), batched=False),
    # a structured (diagonal plus low-rank) forward Jacobian, differentiated again
    Op("jacobian_of_softmax", lambda xp, x: xd.jacfwd(_softmax)(x) * x, (V,), batched=False),
    # a matrix product's Jacobians (identity (x) block, written into zeros), differentiated
    # again: left operand (reverse mode) and right operand (forward mode)
    Op("jacobian_of_matmul", lambda xp, a, b: xp.concat(
        [xp.reshape(xd.jacrev(lambda u: xp.matmul(u, b))(a), (72,)) * a[0, 0],
         xp.reshape(xd.jacfwd(lambda v: xp.matmul(a, v))(b), (48,)) * b[0, 0]]), ((3, 4), (4, 2)),
       batched=False),
    # a dense Jacobian plus an identity part (a residual connection): the identity is added
    # along the diagonal in both modes, differentiated again
    Op("jacobian_of_residual", lambda xp, a, x: xd.jacfwd(lambda v: xp.tanh(xp.matmul(a, v)) * v + v)(x)
       + xd.jacrev(lambda v: xp.sin(xp.matmul(a, v)) - v * 2.0)(x), ((4, 4), (4,)), batched=False),
]
