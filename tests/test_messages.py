"""Errors that name the real fix (what a new user runs into first)."""

from __future__ import annotations

import re
from pathlib import Path

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
    with pytest.raises(AttributeError, match=r"^'Tracer' object has no attribute 'no_such_thing'$"):
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


def _loss(p, X, y):
    r = X @ p["w"] - y
    return r * r


@pytest.mark.parametrize("params", [{"w": np.ones(3)}, {"w": np.ones(3), "b": np.ones(())}])
def test_parameters_first_under_batch_ndim_suggest_data_argnums(params):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 3)), rng.standard_normal(6)
    with pytest.raises((xd.MixingError, ValueError), match=r"data_argnums=\(1, 2\)"):
        xd.jacobian(_loss, argnums=0, batch_ndim=1)(params, X, y)
    J = xd.jacobian(_loss, argnums=0, batch_ndim=1, data_argnums=(1, 2))(params, X, y)
    np.testing.assert_allclose(J["w"], 2 * (X @ params["w"] - y)[:, None] * X)


def test_a_scalar_first_argument_names_the_data_arguments():
    X = np.ones((6, 3))
    with pytest.raises(ValueError, match=r"first array argument, which has 0 dims; if the data are "
                                         r"argument\(s\) 1, say so with data_argnums=\(1,\)"):
        xd.jacobian(lambda s, X: s * X, batch_ndim=1)(np.ones(()), X)


def test_mixing_errors_name_the_arguments_taken_as_data():
    W, X = np.ones((3, 2)), np.ones((6, 3))
    with pytest.raises(xd.MixingError, match=r"took argument\(s\) 0 as data \(leading dims \(3,\)\).*"
                                             r"data_argnums=\(1,\)"):
        xd.jacobian(lambda W, X: xp.tanh(X @ W), batch_ndim=1)(W, X)


def test_argnums_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"grad: argnums must be an int or a sequence of ints, got '0'"):
        xd.grad(lambda x: xp.sum(x), argnums="0")(np.ones(2))


def test_value_and_grad_errors_name_value_and_grad():
    with pytest.raises(TypeError, match=r"^value_and_grad: f must return a scalar"):
        xd.value_and_grad(lambda x: x)(np.ones(2))
    with pytest.raises(TypeError, match=r"^grad: f must return a scalar"):
        xd.grad(lambda x: x)(np.ones(2))


def test_grad_of_a_complex_output_raises_instead_of_taking_the_real_part():
    z = np.array([1.0 + 2.0j, 0.5 - 1.0j])
    with pytest.raises(TypeError, match=r"grad: f returned a complex scalar .* real-valued output"):
        xd.grad(lambda z: xp.sum(z * z))(z)
    # a real function of a complex input is fine (the conjugate-gradient convention)
    assert xd.grad(lambda z: xp.sum(xp.real(z * xp.conj(z))))(z).shape == (2,)


@pytest.mark.parametrize("ax", [2, 3, 4, -3])
def test_vmap_out_axes_out_of_range_is_an_error(ax):
    with pytest.raises(ValueError, match=rf"vmap: out_axes={ax} is out of range for an output of rank 2"):
        xd.vmap(lambda x: x * 2, out_axes=ax)(np.ones((3, 4)))
    np.testing.assert_array_equal(xd.vmap(lambda x: x * 2, out_axes=1)(np.ones((3, 4))), 2 * np.ones((4, 3)))


def test_zero_samples():
    f = lambda x: xp.sum(xp.sin(x))  # noqa: E731
    assert xd.vmap(xd.grad(f))(np.ones((0, 3))).shape == (0, 3)
    H = xd.hessian(lambda x: xp.sum(xp.sin(x), axis=-1), batch_ndim=1)(np.ones((0, 3)))
    assert H.shape == (0, 3, 3)
    np.testing.assert_allclose(xd.vmap(xd.grad(f))(np.ones((2, 3))), np.cos(np.ones((2, 3))))


def test_batches_of_different_sizes_name_the_arguments_the_sizes_and_the_fix():
    x, y = np.ones((4, 3)), np.ones((5, 3))
    for jac in (xd.jacfwd, xd.jacrev, xd.jacobian):
        with pytest.raises(ValueError, match=rf"^{jac.__name__}\(batch_ndim=1\): 'multiply' combines "
                                             r"the data \(argument 0: .*\), whose leading dims are "
                                             r"\(4,\), with argument 1 of shape \(5, 3\), .*: the "
                                             r"data \(batch\) sizes differ \(4 and 5\)\. .* pass "
                                             r"arrays with the same leading dims \(4,\)"):
            jac(lambda x, y: x * y, batch_ndim=1, argnums=(0, 1))(x, y)
    with pytest.raises(ValueError, match=r"^hessian\(batch_ndim=1\): 'multiply' combines .* with "
                                         r"argument 1 \(leaf 0\) of shape \(5, 3\)"):
        xd.hessian(lambda x, p: xp.sum(x * p[0], axis=-1), batch_ndim=1)(x, [y, y])
    with pytest.raises(ValueError, match=r"^jacobian: data shapes disagree: argument 1 .* like "
                                         r"argument 0; .* leave argument 1 out of data_argnums"):
        xd.jacobian(lambda x, y: x * y, batch_ndim=1, data_argnums=(0, 1))(x, y)
    with pytest.raises(ValueError, match=r"^vmap: argument 0 has size 4 along its mapped axis 0, "
                                         r"but argument 1 has size 5 along axis 1; .* in_axes=None"):
        xd.vmap(lambda x, y: x * y, in_axes=(0, 1))(x, np.ones((3, 5)))



@pytest.mark.parametrize("f, m, op, shape", [
    (lambda x, y: x * y[:2], 5, "multiply", (2, 3)),  # a slice of an argument that is not data
    (lambda x, y: y[1:] + x, 6, "add", (5, 3)),
    (lambda x, y: x * (2 * y), 5, "multiply", (5, 3)),  # computed from it
    (lambda x, y: x * xp.ones((5, 3)) * y, 4, "multiply", (5, 3)),  # created in f, shaped like y
])
def test_batches_of_different_sizes_inside_the_function_name_the_sizes_and_the_operation(f, m, op, shape):
    x, y = np.ones((4, 3)), np.ones((m, 3))
    with pytest.raises(ValueError) as info:
        xd.jacobian(f, batch_ndim=1, argnums=(0, 1))(x, y)
    text = str(info.value)
    assert text.startswith(f"jacobian(batch_ndim=1): '{op}' combines the data, whose leading dims "
                           f"are (4,), with an array of shape {shape} whose leading dims are "
                           f"({shape[0]},): the data (batch) sizes differ (4 and {shape[0]}). ")
    assert "shared array" not in text and "argument 1 of shape" not in text
    # the fix gives the array the data's sizes; data_argnums=(1,) would make x shared instead
    assert (f"If it holds one entry per sample, give it the data's leading dims (4,), not "
            f"({shape[0]},): make it before the call and pass it as a data argument (it is then "
            f"indexed per sample), or compute it from the data; if it is shared, give it a shape "
            f"that broadcasts against one sample. batch_ndim=1 took argument(s) ") in text
    assert "data_argnums=(1,)" not in text and text.endswith(
        "the arguments whose leading dims match the first array argument's")


def test_the_errors_page_names_mixing_and_custom_rule_errors_in_their_headings():
    """docs/errors.md titles a section whose example raises xpdiff's MixingError or
    CustomRuleError with that class, so a heading cannot promise one error while its
    example (run by the docs' doctests) shows another."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text(encoding="utf-8")
    wrong = []
    for section in re.split(r"^### ", page, flags=re.M)[1:]:
        heading = section.split("\n", 1)[0]
        for cls in sorted(set(re.findall(r"^(?:[\w.]+\.)?(MixingError|CustomRuleError): ", section,
                                         re.M))):
            if not heading.startswith(f"`{cls}`: "):
                wrong.append((heading, cls))
    assert not wrong, f"headings of docs/errors.md that do not name the error shown: {wrong}"


@pytest.mark.parametrize("g, given, fix", [
    ([1.0, 2.0], "list", r"; convert it with y's namespace: xp\.asarray\(g, dtype=xp\.float64\)$"),
    ("ab", "str", "$"),
    (2.0, "float", r"; for g everywhere, pass xp\.full\(\(2,\), g, dtype=xp\.float64\)$"),
])
def test_a_cotangent_that_is_not_an_array_is_a_type_error_of_to(g, given, fix):
    """As vjp's pullback: not a shape error, and a Python number only for a 0-d y."""
    x = xd.DiffArray(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match=r"^DiffArray\.to: cotangent must be an array of y's shape "
                                        rf"\(2,\) and dtype float64, got {given}{fix}"):
        (x * x).to(x, cotangent=g)
    s = xp.sum(x * x)
    with pytest.raises(TypeError, match=r"shape \(\) and dtype float64 \(or a Python number: y is "
                                        r"0-d\), got list"):
        s.to(x, cotangent=[1.0])
    np.testing.assert_allclose(s.to(x, cotangent=3.0).value, [6.0, 12.0])
    np.testing.assert_allclose(s.to(x, cotangent=3).value, [6.0, 12.0])


@pytest.mark.parametrize("w_shape, ways, hint", [
    # the shapes broadcast and w's leading dims index samples: w may be the data
    ((2, 4, 3), "Write the function per sample and use xpdiff.vmap, or use batch_ndim=0", True),
    ((2, 1, 3), "Write the function per sample and use xpdiff.vmap, or use batch_ndim=0", True),
    # a leading unit dim: dropping it fixes the call; as data it would be one sample
    ((1, 4, 3), r"Give the operand of shape \(1, 4, 3\) the data's rank by dropping its first 1 "
                r"dim\(s\) of size 1 \(shape \(4, 3\)\), or write the function per sample", False),
    # the sizes that meet the data dims differ, or the extra dims are trailing: the shapes
    # do not broadcast, so neither batch_ndim=0 nor data_argnums=(1,) runs
    ((2, 5, 3), r"do not even broadcast .*\. Write the function per sample and use "
                r"xpdiff\.vmap\. batch_ndim=1 took", False),
    ((2, 3, 1), r"do not even broadcast .*\. Write the function per sample and use "
                r"xpdiff\.vmap\. batch_ndim=1 took", False),
    ((3, 4, 2), r"One sample's shapes, \(3,\) and \(3, 4, 2\), do not broadcast either: check "
                r"the shapes f computes with", False),
])
def test_a_shared_argument_of_higher_rank_suggests_data_argnums_only_where_it_fits(w_shape, ways,
                                                                                   hint):
    x, w = np.ones((4, 3)), np.ones(w_shape)
    f = xd.jacobian(lambda x, w: x * w, batch_ndim=1, argnums=0)
    with pytest.raises(xd.MixingError) as err:
        f(x, w)
    text = str(err.value)
    assert re.search(ways, text), text
    assert ("say so with data_argnums=(1,)" in text) == hint, text
    assert text.endswith("the arguments whose leading dims match the first array argument's"
                         + ("; if the data are argument(s) 1, say so with data_argnums=(1,)"
                            if hint else "")), text
    if hint:  # the hint's call runs: argument 1 is the data, x is shared by its samples
        J = xd.jacobian(lambda x, w: x * w, batch_ndim=1, argnums=0, data_argnums=(1,))(x, w)
        assert J.shape == (w_shape[0], 4, 3, 4, 3)


def test_a_higher_rank_array_made_in_the_function_or_data_suggests_no_data_argnums():
    """The higher-rank operand is not an argument the hint names (an array created in the
    function, or data of another per-sample rank): data_argnums= would not fix it."""
    x, w = np.ones((4, 3)), np.ones((5, 3))
    with pytest.raises(xd.MixingError) as err:
        xd.jacobian(lambda x, w: x * xp.ones((4, 1, 1)) * w, batch_ndim=1)(x, w)
    assert "data_argnums=(1,)" not in str(err.value)
    with pytest.raises(xd.MixingError, match=r"One sample's shapes, \(3,\) and \(3, 2\), do not "
                                             r"broadcast either: check the shapes f computes with\. "
                                             r"batch_ndim=1 took argument\(s\) 0, 1 as data") as err:
        xd.jacobian(lambda x, w, z: x * w, batch_ndim=1)(x, np.ones((4, 3, 2)), np.ones(5))
    assert "data_argnums=(2,)" not in str(err.value)
