"""Errors that name the real fix (what a new user runs into first)."""

from __future__ import annotations

import numpy as np
import pytest

import xpdiff as xd

xp = xd.numpy


@pytest.mark.parametrize("fn, name", [(xp.mean, "mean"), (xp.var, "var"), (xp.std, "std"),
                                      (xp.sum, "sum"), (xp.sort, "sort")])
def test_mixing_error_names_the_function_called(fn, name):
    with pytest.raises(xd.MixingError, match=rf"'{name}' acts along axis 0"):
        xd.jacobian(lambda x: fn(x, axis=0), batch_ndim=1)(np.ones((3, 2)))


def test_array_methods_name_the_standard_function():
    with pytest.raises(AttributeError, match=r"no attribute 'sum': .* write xp\.sum\(x"):
        xd.grad(lambda x: x.sum())(np.ones(3))
    with pytest.raises(AttributeError, match=r"'flatten'.*xp\.reshape\(x, \(-1,\)\)"):
        xd.grad(lambda x: x.flatten())(np.ones(3))
    with pytest.raises(AttributeError, match=r"x\.item\(\) .* would drop the derivative"):
        xd.grad(lambda x: x.item())(np.ones(()))
    with pytest.raises(AttributeError, match=r"^'JVPTracer' object has no attribute 'no_such_thing'$"):
        xd.jvp(lambda x: x.no_such_thing, (np.ones(2),), (np.ones(2),))
    # hasattr-style probing still answers False
    seen = []
    xd.grad(lambda x: (seen.append(hasattr(x, "sum")), xp.sum(x))[1])(np.ones(3))
    assert seen == [False]


def test_float_of_an_eager_diffarray_names_value():
    E = xd.DiffArray(np.ones(())) * 2
    with pytest.raises(TypeError, match=r"\.value"):
        float(E)


def test_numpy_conversion_inside_scipy_names_scipy_array_api(monkeypatch):
    pytest.importorskip("scipy")
    monkeypatch.delenv("SCIPY_ARRAY_API", raising=False)
    with pytest.raises(TypeError, match="SCIPY_ARRAY_API=1"):
        xd.grad(lambda x: xp.sum(xp.asarray(np.asarray(x))))(np.ones(3))
