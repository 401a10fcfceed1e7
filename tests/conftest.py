"""Backends the tests run on.

By default: NumPy, array-api-strict, and array-api-strict on a simulated second
device (which raises on any device mix or host conversion).  The environment
variable ``XPDIFF_TEST_BACKENDS`` replaces that list with a comma-separated one
of ``numpy``, ``strict``, ``strict-device1``, ``cupy``, ``torch``, ``torch-cuda``,
``jax`` and ``default`` (the three above), e.g. on a GPU machine::

    XPDIFF_TEST_BACKENDS=cupy,torch-cuda python -m pytest tests

Every backend but the NumPy/strict ones names its device explicitly, so the
tests that check result devices check them there too.  On ``torch-cuda`` each
test runs under ``torch.cuda.set_sync_debug_mode("error")``: any host-device
synchronisation made by a transformation (a ``.item()``, a host copy, an
implicit transfer) raises.  Only the test helpers' own host transfers (creating
inputs, reading results back) are let through.

Tests marked ``peers`` (the op table on torch and JAX CPU arrays) are deselected
unless asked for with ``-m peers``.  ``XPDIFF_TEST_BACKEND_ONLY=1`` deselects every
test that does not take the ``backend`` fixture (the GPU check runs only those).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

ENV = "XPDIFF_TEST_BACKENDS"
DEFAULT = ("numpy", "strict", "strict-device1")
KNOWN = ("numpy", "strict", "strict-device1", "cupy", "torch", "torch-cuda", "jax")


class Backend:
    """One backend (and device) the tests create their arrays on."""

    def __init__(self, name: str, xp, device=None, sync_debug: bool = False):
        self.name, self.xp, self.device, self.sync_debug = name, xp, device, sync_debug

    def asarray(self, a, dtype=np.float64):
        from xpdiff.backend import on_device

        return on_device(self.xp, np.asarray(a, dtype=dtype), self.device)

    def to_numpy(self, x) -> np.ndarray:
        from xpdiff.backend import to_host

        return to_host(x)

    @contextlib.contextmanager
    def active(self, monkeypatch):
        """The test's context: sync debug mode "error" on torch-cuda, nothing elsewhere."""
        if not self.sync_debug:
            yield
            return
        import torch

        _allow_helper_transfers(monkeypatch)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(0)

    def __repr__(self) -> str:
        return self.name


def _allow_helper_transfers(monkeypatch) -> None:
    """Let xpdiff.testing's helpers copy between host and device under sync debug mode
    (they compare values on the host: that is the check, not the transformation)."""
    from xpdiff import backend as _backend
    from xpdiff import testing

    class _HostCopiesAllowed:
        def __init__(self, ns):
            self._ns = ns

        def __getattr__(self, name):
            return getattr(self._ns, name)

        def asarray(self, *args, **kwargs):
            with _backend.allow_sync():
                return self._ns.asarray(*args, **kwargs)

    monkeypatch.setattr(testing, "_host", _backend.to_host)
    monkeypatch.setattr(testing, "_like", lambda arr, like: _backend.from_host(arr, like))
    monkeypatch.setattr(testing, "_ns", lambda x: _HostCopiesAllowed(_backend.namespace_of(x)))


def _make(name: str) -> Backend:
    if name == "numpy":
        import array_api_compat.numpy as cnp

        return Backend("numpy", cnp)
    if name in ("strict", "strict-device1"):
        import array_api_strict as xps

        return Backend(name, xps, xps.Device("device1") if name == "strict-device1" else None)
    if name == "cupy":
        import array_api_compat.cupy as ccp
        import cupy

        return Backend("cupy", ccp, cupy.cuda.Device(0))
    if name in ("torch", "torch-cuda"):
        import array_api_compat.torch as ctorch
        import torch

        if name == "torch":
            return Backend(name, ctorch, torch.device("cpu"))
        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False")
        return Backend(name, ctorch, torch.device("cuda", 0), sync_debug=True)
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # the tests use float64
        import jax.numpy as jnp

        return Backend(name, jnp, jax.devices()[0])
    raise ValueError(name)


def _backends() -> list[Backend]:
    spec = os.environ.get(ENV, "").strip()
    names: list[str] = []
    for n in (s.strip() for s in spec.split(",") if s.strip()) if spec else ["default"]:
        for m in DEFAULT if n == "default" else (n,):
            if m not in KNOWN:
                raise pytest.UsageError(f"{ENV}: unknown backend {m!r}; choose from "
                                        f"{', '.join(KNOWN)} or 'default'")
            if m not in names:
                names.append(m)
    out = []
    for n in names:
        try:
            out.append(_make(n))
        except (ImportError, RuntimeError) as e:
            raise pytest.UsageError(f"{ENV} names backend {n!r}, which is not usable here: "
                                    f"{e}") from None
    return out


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request, monkeypatch) -> Backend:
    be = request.param
    with be.active(monkeypatch):
        yield be


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "peers: the op table on torch and JAX CPU arrays through "
                                       "array-api-compat (slow; run with -m peers)")


def pytest_collection_modifyitems(config, items) -> None:
    if os.environ.get("XPDIFF_TEST_BACKEND_ONLY") == "1":
        keep, drop = [], []
        for item in items:
            (keep if "backend" in getattr(item, "fixturenames", ()) else drop).append(item)
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if "peers" in (config.getoption("-m") or ""):
        return
    # the peers group runs only when asked for (-m peers): deselected, not skipped
    keep, drop = [], []
    for item in items:
        (drop if "peers" in item.keywords else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
