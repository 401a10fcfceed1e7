"""Backends every test runs on: NumPy, array-api-strict, and array-api-strict on a
simulated second device (which raises on any device mix or host conversion)."""

from __future__ import annotations

import numpy as np
import pytest


class Backend:
    def __init__(self, name: str, xp, device=None):
        self.name, self.xp, self.device = name, xp, device

    def asarray(self, a, dtype=np.float64):
        a = np.asarray(a, dtype=dtype)
        if self.device is None:
            return self.xp.asarray(a)
        return self.xp.asarray(a, device=self.device)

    def to_numpy(self, x) -> np.ndarray:
        from xpdiff.testing import _host

        return _host(x)

    def __repr__(self) -> str:
        return self.name


def _backends():
    import array_api_compat.numpy as cnp
    import array_api_strict as xps

    return [Backend("numpy", cnp), Backend("strict", xps),
            Backend("strict-device1", xps, xps.Device("device1"))]


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request) -> Backend:
    return request.param
