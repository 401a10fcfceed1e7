"""The ``fft`` extension of the standard, and derivatives through complex values.

Complex convention (JAX's): a tangent of a complex array is complex and the JVP
is the real-linear differential; a VJP is the transpose for the real pairing
``<a, b> = real(sum(a * b))`` (no conjugation).  Holomorphic rules (``multiply``,
``exp``, ``matmul``, ``fft``, ...) therefore keep their real form (``g * f'(z)``),
and for a real loss ``L`` of a complex ``z = x + iy`` the cotangent is
``dL/dx - i dL/dy``; where the input is real the cotangent is the real gradient.
``real``, ``imag``, ``conj`` and ``abs`` of complex input are not holomorphic:
their primitives live here (``complex.*``) and the namespace's ``real``, ``imag``,
``conj`` and ``abs`` send complex input to them (real input keeps the elementwise
rules).  See docs/linalg-fft.md.

The transforms: ``fft``/``ifft`` (one primitive each, over a tuple of axes) are
complex-linear with symmetric DFT matrices, so each is its own transpose;
``rfft`` and ``irfft`` are real-linear and get explicit transposes.  Padding and
trimming to ``n``/``s`` is done with slicing and ``concat`` (differentiable
already), and ``fftn``, ``rfftn``, ``irfftn``, ``hfft``, ``ihfft``, ``fftshift``
and ``ifftshift`` are compositions.  ``fftfreq`` and ``rfftfreq`` are constants.
"""

from __future__ import annotations

from typing import Any

from ..backend import backend_namespace
from ..core import lift_constant, namespace_for_values, primitive, raw_namespace
from . import elementwise  # noqa: F401  (registers real/imag/conj/abs first: wrapped below)
from ._families import EXPORTS, dtype_kind, export, norm_axis
from .indexing import _getitem_fn

# --- complex helpers ---------------------------------------------------------------------------


def is_complex(x: Any) -> bool:
    """Whether ``x`` (an array, traced or not) has a complex floating dtype."""
    return dtype_kind(raw_namespace(x), x.dtype) == "complex floating"


def _complex_dtype(ns: Any, dt: Any) -> Any:
    return ns.complex64 if dt == ns.float32 else ns.complex128


def _passthrough(name, impl, jvp, vjp):
    """An elementwise primitive on one operand (no broadcasting, no params)."""
    p = primitive(name, impl, jvp=jvp, vjp=vjp, data=lambda ctx, ops, has: (ops, {}))
    p.batch = lambda xp, v, b, n: (p.bind(v[0]), True)
    return p


def _as_complex(x):
    return x if is_complex(x) else _from_real.bind(x)


def _re(x):
    return _real.bind(x) if is_complex(x) else x


def conj_(x):
    """``conj(x)`` for complex ``x``; ``x`` itself otherwise (internal helper)."""
    return _conj.bind(x) if is_complex(x) else x


def _sign(xp, z, a):
    """``z / |z|`` (0 at 0), differentiable."""
    safe = xp.where(xp.equal(a, 0.0), 1.0, a)
    return xp.divide(z, _as_complex(safe))


_from_real = _passthrough(
    "complex.from_real", lambda bk, x: bk.astype(x, _complex_dtype(bk, x.dtype)),
    lambda xp, p, t: (_from_real.bind(p[0]), _as_complex(t[0])),
    lambda xp, g, out, p, needs: [_re(g)])

_real = _passthrough(
    "complex.real", lambda bk, x: bk.real(x),
    lambda xp, p, t: (_real.bind(p[0]), _re(t[0])),
    lambda xp, g, out, p, needs: [_as_complex(_re(g))])

_imag = _passthrough(
    "complex.imag", lambda bk, x: bk.imag(x),
    lambda xp, p, t: (_imag.bind(p[0]),
                      _imag.bind(t[0]) if is_complex(t[0]) else xp.zeros_like(t[0])),
    # real(c * t) = g * imag(t) for c = -i g
    lambda xp, g, out, p, needs: [xp.multiply(_as_complex(_re(g)), -1j)])

_conj = _passthrough(
    "complex.conj", lambda bk, x: bk.conj(x),
    lambda xp, p, t: (_conj.bind(p[0]), conj_(t[0])),
    lambda xp, g, out, p, needs: [conj_(g)])


def _abs_jvp(xp, p, t):
    z = p[0]
    a = _abs.bind(z)
    return a, _re(xp.multiply(conj_(_sign(xp, z, a)), _as_complex(t[0])))


def _abs_vjp(xp, g, out, p, needs):
    return [xp.multiply(_as_complex(_re(g)), conj_(_sign(xp, p[0], out)))]


_abs = _passthrough("complex.abs", lambda bk, x: bk.abs(x), _abs_jvp, _abs_vjp)

# the elementwise chapter's functions, right for real input (kept for it)
_REAL_INPUT = {n: EXPORTS[n] for n in ("real", "imag", "conj", "abs")}


@export
def real(x, /):
    """Real part; for complex input ``d real(z) = real(dz)`` (docs/linalg-fft.md).

    >>> import numpy as np, xpdiff as xd
    >>> xp = xd.numpy
    >>> xd.grad(lambda x: xp.sum(xp.real(xp.fft.fft(x))))(np.array([1.0, 2.0, 3.0]))
    array([3., 0., 0.])
    """
    return _real.bind(x) if is_complex(x) else _REAL_INPUT["real"](x)


@export
def imag(x, /):
    """Imaginary part; for complex input ``d imag(z) = imag(dz)``."""
    return _imag.bind(x) if is_complex(x) else _REAL_INPUT["imag"](x)


@export
def conj(x, /):
    """Complex conjugate; for complex input ``d conj(z) = conj(dz)``."""
    return _conj.bind(x) if is_complex(x) else _REAL_INPUT["conj"](x)


@export(name="abs")
def abs_(x, /):
    """Absolute value; for complex input ``d|z| = real(conj(z) dz) / |z|`` (0 at ``z = 0``)."""
    return _abs.bind(x) if is_complex(x) else _REAL_INPUT["abs"](x)


# --- padding ---------------------------------------------------------------------------------

def fit_axis(x: Any, axis: int, n: int) -> Any:
    """``x`` trimmed or zero-padded at the end of dim ``axis`` (non-negative) to length ``n``."""
    m = x.shape[axis]
    if n == m:
        return x
    pre = (slice(None),) * axis
    if n < m:
        return _getitem_fn(x, pre + (slice(0, n),))
    xp = namespace_for_values([x])
    # a zero of x's kind with dim `axis` of length 1 (an empty dim sums to one)
    zero = xp.zeros_like(xp.sum(x, axis=axis, keepdims=True, dtype=x.dtype) if m == 0
                         else _getitem_fn(x, pre + (slice(0, 1),)))
    shape = tuple(n - m if i == axis else s for i, s in enumerate(x.shape))
    return xp.concat([x, xp.broadcast_to(zero, shape)], axis=axis)


# --- transform primitives ----------------------------------------------------------------------

_NORMS = ("backward", "ortho", "forward")
_SWAP = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


def _data_axes(ctx, ops, has, *, axes, norm):
    return ops, {"axes": ctx.axes(ops[0].ndim + ctx.k, axes), "norm": norm}


def _c2c(name, inverse):
    def impl(bk, x, *, axes, norm):
        if len(axes) == 1:
            return (bk.fft.ifft if inverse else bk.fft.fft)(x, axis=axes[0], norm=norm)
        return (bk.fft.ifftn if inverse else bk.fft.fftn)(x, axes=axes, norm=norm)

    p = primitive(name, impl, data=_data_axes)
    p.jvp = lambda xp, pr, t, **kw: (p.bind(pr[0], **kw), p.bind(_as_complex(t[0]), **kw))
    # the (scaled) DFT matrix is symmetric: the transform is its own transpose
    p.vjp = lambda xp, g, out, pr, needs, **kw: [p.bind(_as_complex(g), **kw)]
    p.batch = lambda xp, v, b, n, *, axes, norm: (
        p.bind(v[0], axes=tuple(a + 1 for a in axes), norm=norm), True)
    return p


_fft = _c2c("fft.fft", inverse=False)
_ifft = _c2c("fft.ifft", inverse=True)


def _data_axis(ctx, ops, has, *, axis, **kw):
    return ops, dict(kw, axis=ctx.axes(ops[0].ndim + ctx.k, axis))


def _rfft_vjp(xp, g, out, p, needs, *, axis, norm):
    # rfft keeps the first n//2+1 outputs of the full transform: its transpose pads the
    # cotangent with zeros, transforms it back and keeps the real part (the input is real)
    full = fit_axis(_as_complex(g), axis, p[0].shape[axis])
    return [_re(_fft.bind(full, axes=(axis,), norm=norm))]


_rfft = primitive(
    "fft.rfft", lambda bk, x, *, axis, norm: bk.fft.rfft(x, axis=axis, norm=norm),
    jvp=lambda xp, p, t, **kw: (_rfft.bind(p[0], **kw), _rfft.bind(_re(t[0]), **kw)),
    vjp=_rfft_vjp, data=_data_axis,
    batch=lambda xp, v, b, n, *, axis, norm: (_rfft.bind(v[0], axis=axis + 1, norm=norm), True))


def _irfft_vjp(xp, g, out, p, needs, *, axis, n, norm):
    # irfft(t)_j = s * sum_k alpha_k real(t_k e^{+2 pi i jk/n}) with alpha = 1 at k = 0 (and
    # k = n/2 for even n), 2 elsewhere: the transpose is alpha * conj(rfft(g)) with the
    # same scale s, i.e. rfft with the swapped norm
    h = n // 2 + 1
    c = _conj.bind(_rfft.bind(_re(g), axis=axis, norm=_SWAP[norm]))
    # alpha_k = 2 for 0 < k < n/2, else 1: built on the device (no host list copied over)
    k = xp.arange(h, device=c.device)
    alpha = xp.astype(xp.logical_and(k > 0, 2 * k < n), c.dtype) + 1
    w = xp.reshape(alpha, (h,) + (1,) * (g.ndim - 1 - axis))
    return [xp.multiply(c, w)]


_irfft = primitive(
    "fft.irfft", lambda bk, x, *, axis, n, norm: bk.fft.irfft(x, n=n, axis=axis, norm=norm),
    jvp=lambda xp, p, t, **kw: (_irfft.bind(p[0], **kw), _irfft.bind(_as_complex(t[0]), **kw)),
    vjp=_irfft_vjp, data=_data_axis,
    batch=lambda xp, v, b, size, *, axis, n, norm: (
        _irfft.bind(v[0], axis=axis + 1, n=n, norm=norm), True))


# --- public functions --------------------------------------------------------------------------

def _check(name, x, norm):
    if norm not in _NORMS:
        raise ValueError(f"fft.{name}: norm must be one of {_NORMS}, got {norm!r}")
    if dtype_kind(raw_namespace(x), x.dtype) not in ("real floating", "complex floating"):
        raise TypeError(f"fft.{name}: x must have a floating-point dtype, got {x.dtype}; cast it "
                        f"first, e.g. xp.astype(x, xp.float64)")


def _length(name, n, what="n"):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"fft.{name}: {what} must be a positive int, got {n!r}")
    return n


def _real_input(name, x):
    if is_complex(x):
        raise TypeError(f"fft.{name}: x must be real (got {x.dtype}); use fft.fft for complex input")
    return x


def _one_axis(name, prim, x, n, axis, norm):
    _check(name, x, norm)
    x = _as_complex(x)
    axis = norm_axis(axis, x.ndim)
    if n is not None:
        x = fit_axis(x, axis, _length(name, n))
    return prim.bind(x, axes=(axis,), norm=norm)


def _axes_and_sizes(name, x, s, axes):
    if axes is None:
        axes = range(x.ndim) if s is None else range(x.ndim - len(s), x.ndim)
    axes = tuple(norm_axis(a, x.ndim, "axes") for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"fft.{name}: axes={axes} repeats an axis")
    if s is None:
        return axes, [None] * len(axes)
    if len(s) != len(axes):
        raise ValueError(f"fft.{name}: s={tuple(s)} and axes={axes} must have the same length")
    return axes, [None if v == -1 else _length(name, v, "s[i]") for v in s]


def _many_axes(name, prim, x, s, axes, norm):
    _check(name, x, norm)
    x = _as_complex(x)
    axes, sizes = _axes_and_sizes(name, x, s, axes)
    for a, v in zip(axes, sizes):
        if v is not None:
            x = fit_axis(x, a, v)
    return prim.bind(x, axes=axes, norm=norm) if axes else x


@export(name="fft.fft")
def fft(x, /, *, n=None, axis=-1, norm="backward"):
    """One-dimensional discrete Fourier transform (real input is taken as complex).

    >>> import numpy as np, xpdiff as xd
    >>> xp = xd.numpy
    >>> loss = lambda x: xp.sum(xp.abs(xp.fft.fft(x)) ** 2)   # Parseval: n * sum(x**2)
    >>> xd.grad(loss)(np.array([1.0, 2.0, 3.0]))
    array([ 6., 12., 18.])
    """
    return _one_axis("fft", _fft, x, n, axis, norm)


@export(name="fft.ifft")
def ifft(x, /, *, n=None, axis=-1, norm="backward"):
    """One-dimensional inverse discrete Fourier transform."""
    return _one_axis("ifft", _ifft, x, n, axis, norm)


@export(name="fft.fftn")
def fftn(x, /, *, s=None, axes=None, norm="backward"):
    """n-dimensional discrete Fourier transform over ``axes`` (all dims for ``None``),
    padded or trimmed to the sizes ``s`` (``-1``: keep the size)."""
    return _many_axes("fftn", _fft, x, s, axes, norm)


@export(name="fft.ifftn")
def ifftn(x, /, *, s=None, axes=None, norm="backward"):
    """n-dimensional inverse discrete Fourier transform."""
    return _many_axes("ifftn", _ifft, x, s, axes, norm)


@export(name="fft.rfft")
def rfft(x, /, *, n=None, axis=-1, norm="backward"):
    """Transform of a real signal: the ``n//2 + 1`` non-negative frequencies."""
    _check("rfft", x, norm)
    _real_input("rfft", x)
    axis = norm_axis(axis, x.ndim)
    if n is not None:
        x = fit_axis(x, axis, _length("rfft", n))
    return _rfft.bind(x, axis=axis, norm=norm)


@export(name="fft.irfft")
def irfft(x, /, *, n=None, axis=-1, norm="backward"):
    """Inverse of ``rfft``: a real signal of length ``n`` (default ``2 * (m - 1)``) from
    its non-negative frequencies (the imaginary parts of the zero and, for even ``n``,
    Nyquist terms are ignored, and get no derivative)."""
    _check("irfft", x, norm)
    x = _as_complex(x)
    axis = norm_axis(axis, x.ndim)
    n = 2 * (x.shape[axis] - 1) if n is None else n
    n = _length("irfft", n)
    return _irfft.bind(fit_axis(x, axis, n // 2 + 1), axis=axis, n=n, norm=norm)


@export(name="fft.rfftn")
def rfftn(x, /, *, s=None, axes=None, norm="backward"):
    """n-dimensional transform of a real array (``rfft`` over the last of ``axes``)."""
    _check("rfftn", x, norm)
    _real_input("rfftn", x)
    axes, sizes = _axes_and_sizes("rfftn", x, s, axes)
    if not axes:
        return _as_complex(x)
    y = rfft(x, n=sizes[-1], axis=axes[-1], norm=norm)
    if len(axes) == 1:
        return y
    return _many_axes("rfftn", _fft, y, [-1 if v is None else v for v in sizes[:-1]],
                      axes[:-1], norm)


@export(name="fft.irfftn")
def irfftn(x, /, *, s=None, axes=None, norm="backward"):
    """Inverse of ``rfftn``; the last of ``axes`` gets length ``s[-1]`` (default
    ``2 * (m - 1)``)."""
    _check("irfftn", x, norm)
    x = _as_complex(x)
    axes, sizes = _axes_and_sizes("irfftn", x, s, axes)
    if not axes:
        return _re(x)
    if len(axes) > 1:
        x = _many_axes("irfftn", _ifft, x, [-1 if v is None else v for v in sizes[:-1]],
                       axes[:-1], norm)
    return irfft(x, n=sizes[-1], axis=axes[-1], norm=norm)


@export(name="fft.hfft")
def hfft(x, /, *, n=None, axis=-1, norm="backward"):
    """Transform of a Hermitian-symmetric signal given by its first half (real output):
    ``irfft(conj(x))`` with the opposite normalisation."""
    _check("hfft", x, norm)
    return irfft(conj_(_as_complex(x)), n=n, axis=axis, norm=_SWAP[norm])


@export(name="fft.ihfft")
def ihfft(x, /, *, n=None, axis=-1, norm="backward"):
    """Inverse of ``hfft`` for a real signal: ``conj(rfft(x))`` with the opposite
    normalisation."""
    _check("ihfft", x, norm)
    return conj_(rfft(_real_input("ihfft", x), n=n, axis=axis, norm=_SWAP[norm]))


def _roll_axes(name, x, axes, inverse):
    if axes is None:
        axes = range(x.ndim)
    elif isinstance(axes, int):
        axes = (axes,)
    xp = namespace_for_values([x])
    for a in axes:
        a = norm_axis(a, x.ndim, "axes")
        m = x.shape[a]
        k = (-(m // 2) if inverse else m // 2) % m if m else 0
        if k:  # roll by k: the last k entries come first
            pre = (slice(None),) * a
            x = xp.concat([_getitem_fn(x, pre + (slice(m - k, None),)),
                           _getitem_fn(x, pre + (slice(0, m - k),))], axis=a)
    return x


@export(name="fft.fftshift")
def fftshift(x, /, *, axes=None):
    """Move the zero-frequency term to the centre of ``axes`` (all dims for ``None``)."""
    return _roll_axes("fftshift", x, axes, inverse=False)


@export(name="fft.ifftshift")
def ifftshift(x, /, *, axes=None):
    """Inverse of ``fftshift``."""
    return _roll_axes("ifftshift", x, axes, inverse=True)


# --- constants: sample frequencies ---------------------------------------------------------------

CREATION = ("fftfreq", "rfftfreq")  # the extension's creation functions (need a backend)


def backend_fft_creation(bk: Any, const: Any) -> dict:
    """``fftfreq`` and ``rfftfreq`` bound to the raw backend namespace ``bk``.

    Args:
        bk: the raw array-API namespace the arrays are created with.
        const: lifts a freshly created array onto the innermost active transformation.

    Returns:
        A dict name -> function with the standard's signature.
    """

    def _kw(d, dtype, device):
        kw = {"d": d}
        if dtype is not None:
            kw["dtype"] = dtype
        if device is not None:
            kw["device"] = device
        return kw

    def fftfreq(n, /, *, d=1.0, dtype=None, device=None):
        """Sample frequencies of ``fft`` for a signal of length ``n`` and spacing ``d``
        (a constant: no derivative flows from it)."""
        return const(bk.fft.fftfreq(n, **_kw(d, dtype, device)))

    def rfftfreq(n, /, *, d=1.0, dtype=None, device=None):
        """Sample frequencies of ``rfft`` (``n//2 + 1`` of them; a constant)."""
        return const(bk.fft.rfftfreq(n, **_kw(d, dtype, device)))

    return {"fftfreq": fftfreq, "rfftfreq": rfftfreq}


def _default_backend_creation(name):
    def fn(n, /, *, d=1.0, dtype=None, device=None):
        return backend_fft_creation(backend_namespace(), lift_constant)[name](
            n, d=d, dtype=dtype, device=device)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = (f"``{name}`` on the default backend (``$XPDIFF_BACKEND``, else NumPy): a "
                  f"constant. A namespace over another backend binds its own; see "
                  f"docs/linalg-fft.md.")
    return fn


for _name in CREATION:
    export(_default_backend_creation(_name), name=f"fft.{_name}")
