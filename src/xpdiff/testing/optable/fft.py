"""Entries for the ``fft`` extension: real-valued functions of the transforms.

The checks compare with finite differences of the same function on the raw
backend, where ``fft``/``ifft`` take complex input only (array-api-strict), so the
complex-to-complex transforms are applied to complex intermediates made by
``rfft``/``ihfft``.  Each entry reduces its complex values to real ones through
``real``, ``imag``, ``conj`` or ``abs`` (whose complex derivatives live in
rules/fft.py), so the derivatives are checked under the complex convention of
docs/linalg-fft.md.
"""

from __future__ import annotations

from ._op import Op


def _parts(xp, z):
    return xp.real(z) + 2.0 * xp.imag(z)


def _power(xp, z):
    return xp.real(z * xp.conj(z))


def _fft(xp, x):
    return _parts(xp, xp.fft.fft(xp.fft.rfft(x), n=5))


def _ifft(xp, x):
    z = xp.fft.ifft(xp.fft.rfft(x), n=2, norm="ortho")
    return _power(xp, z) + xp.imag(z)


def _fftn(xp, x):
    return _parts(xp, xp.fft.fftn(xp.fft.rfft(x), s=(4, 2), axes=(-2, -1)))


def _ifftn(xp, x):
    return _parts(xp, xp.fft.ifftn(xp.fft.rfft(x, axis=-2), axes=(-2, -1), norm="forward"))


def _convolve(xp, x, w):
    return xp.fft.irfft(xp.fft.rfft(x) * xp.fft.rfft(w))


def _convolve_padded(xp, x, w):
    f = xp.fft
    return f.irfft(f.rfft(x, n=6, norm="ortho") * f.rfft(w, n=6), n=6, norm="ortho")


def _irfft_odd(xp, x, w):
    f = xp.fft
    return f.irfft(f.rfft(x) * f.rfft(w), n=5, norm="forward")


def _convolve2d(xp, x, w):
    f = xp.fft
    axes = (-2, -1)
    return f.irfftn(f.rfftn(x, axes=axes) * f.rfftn(w, axes=axes), s=tuple(x.shape[-2:]),
                    axes=axes)


def _hermitian(xp, x, w):
    f = xp.fft
    return f.hfft(f.ihfft(x) * f.ihfft(w, norm="ortho"), n=4)


def _abs(xp, x):
    return xp.abs(xp.fft.fft(xp.fft.rfft(x)))


def _shift(xp, x):
    f = xp.fft
    return f.ifftshift(f.fftshift(x, axes=-1) * x, axes=(-2, -1))


S = (3, 4)
OPS: list[Op] = [
    Op("fft.fft", _fft, (S,)),
    Op("fft.ifft", _ifft, (S,)),
    Op("fft.fftn", _fftn, (S,)),
    Op("fft.ifftn", _ifftn, (S,)),
    Op("fft.rfft_irfft", _convolve, (S, S)),
    Op("fft.rfft_irfft_padded", _convolve_padded, (S, S)),
    Op("fft.irfft_odd", _irfft_odd, (S, S)),
    Op("fft.rfftn_irfftn", _convolve2d, (S, S)),
    Op("fft.hfft_ihfft", _hermitian, (S, S)),
    Op("fft.abs", _abs, (S,)),
    Op("fft.shift", _shift, (S,)),
    # a real weight multiplying a complex spectrum: its cotangent must come back real
    Op("fft.filter_real", lambda xp, x, w: xp.fft.irfft(xp.fft.rfft(x) * w, n=x.shape[-1]),
       (S, (3, 3))),
    Op("fft.of_complex_cast", lambda xp, x: xp.real(xp.fft.fft(xp.astype(x, xp.complex128))) * x,
       (S,)),
]
