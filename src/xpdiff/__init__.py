"""xpdiff: automatic differentiation over the Python array API standard.

Batched derivative tensors (per-sample Jacobians, Hessians) on NumPy, CuPy and
any array-API backend, computed on the arrays' device.

>>> import numpy as np, xpdiff as xd
>>> def f(x):
...     xp = x.__array_namespace__()
...     return xp.sin(x) * xp.exp(x) + x ** 2
>>> xd.jacobian(f, batch_ndim=1)(np.ones((8, 4))).shape
(8, 4, 4)
"""

from . import scaleout  # registers the Dask handler; never imports Dask
from .backend import BackendUnavailableError
from .core import AliasingError, MixingError, RuleError, XpdiffError
from .custom import CustomRuleError, custom_jvp, custom_vjp
from .eager import DiffArray
from .jit import JitWarning, jit
from .namespaces import Namespace, namespace
from .rules.manipulation import stop_gradient
from .transforms.api import grad, hessian, jacfwd, jacobian, jacrev, jvp, value_and_grad, vjp, vmap

__version__ = "0.1.0"


def __getattr__(name: str):
    # xd.numpy, xd.cupy, xd.array_api_strict: namespaces created on first use
    if name in ("numpy", "cupy", "array_api_strict", "torch", "jax"):
        return namespace(name)
    raise AttributeError(f"module 'xpdiff' has no attribute {name!r}")


__all__ = ["AliasingError", "BackendUnavailableError", "CustomRuleError", "DiffArray", "JitWarning",
           "MixingError", "Namespace", "RuleError", "XpdiffError", "custom_jvp", "custom_vjp", "grad",
           "hessian", "jacfwd", "jacobian", "jacrev", "jit", "jvp", "namespace", "scaleout",
           "stop_gradient", "value_and_grad", "vjp", "vmap"]
