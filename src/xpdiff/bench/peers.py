"""Lazy loading of the benchmarked libraries ("peers") and array plumbing.

Nothing in this module imports JAX, PyTorch, HIPS autograd, CuPy or even the
xpdiff core at import time: every library is imported the first time a peer
that needs it is asked for, and a peer whose library is missing is reported
as unavailable instead of failing.

Peer names
----------
``xpdiff``
    this library.
``xpdiff-jit``
    this library's transformations staged by ``xpdiff.jit`` (reported as not
    available where this version of xpdiff has no ``jit``).
``jax`` / ``jax-jit``
    ``jax`` transformations run eagerly / wrapped in ``jax.jit``.
``torch``
    ``torch.func`` transformations.
``torch-backward``
    plain ``tensor.backward()`` (overhead workload only).
``autograd``
    HIPS autograd.
``numpy-closed``
    the derivative written by hand in NumPy (or CuPy): the closed form of each
    workload (:mod:`xpdiff.bench.closed`), the limit of the backend.
``numpy-fwd``
    the plain NumPy (or CuPy) forward computation, no derivative (overhead
    workload only).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Every peer, in the order used for table columns and plots.
PEER_ORDER: tuple[str, ...] = (
    "xpdiff",
    "xpdiff-jit",
    "jax",
    "jax-jit",
    "torch",
    "torch-backward",
    "autograd",
    "numpy-closed",
    "numpy-fwd",
)

#: Peers that can be selected with ``--peers`` (xpdiff always runs).
SELECTABLE_PEERS: tuple[str, ...] = ("xpdiff-jit", "jax", "jax-jit", "torch", "autograd")

#: Peers implied by a selectable peer.
_IMPLIED: dict[str, tuple[str, ...]] = {"torch": ("torch-backward",)}


class PeerUnavailable(RuntimeError):
    """Raised when a peer's library cannot be imported or used."""


def expand_peers(peers: Iterable[str] | None) -> tuple[str, ...]:
    """Return the full, ordered peer list for a user selection.

    ``None`` selects every selectable peer.  ``xpdiff`` and ``numpy-fwd`` are
    always included; ``torch`` also brings ``torch-backward``.
    """
    chosen = set(SELECTABLE_PEERS if peers is None else peers)
    unknown = chosen - set(SELECTABLE_PEERS) - {"xpdiff", "numpy-fwd", "numpy-closed",
                                                "torch-backward"}
    if unknown:
        raise ValueError(f"unknown peer(s) {sorted(unknown)}; choose from {', '.join(SELECTABLE_PEERS)}")
    for peer in list(chosen):
        chosen.update(_IMPLIED.get(peer, ()))
    chosen.update({"xpdiff", "numpy-fwd", "numpy-closed"})
    return tuple(p for p in PEER_ORDER if p in chosen)


class TorchOps:
    """A tiny array-API-like facade over ``torch`` used by the shared bodies.

    The workload bodies are written once against a namespace ``xp`` using
    ``sin, exp, tanh, log, matmul, sum(axis, keepdims), max(axis, keepdims)``;
    JAX (``jax.numpy``), autograd (``autograd.numpy``) and xpdiff provide
    these directly, torch spells the reductions differently.
    """

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self.sin = torch.sin
        self.exp = torch.exp
        self.tanh = torch.tanh
        self.log = torch.log
        self.matmul = torch.matmul

    def sum(self, x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
        """Sum over ``axis`` (all axes when ``None``)."""
        if axis is None:
            return self._torch.sum(x)
        return self._torch.sum(x, dim=axis, keepdim=keepdims)

    def max(self, x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
        """Maximum over ``axis`` (all axes when ``None``)."""
        if axis is None:
            return self._torch.amax(x)
        return self._torch.amax(x, dim=axis, keepdim=keepdims)


@dataclass
class Runtime:
    """Loaded peer libraries for one benchmark run on one backend.

    Parameters
    ----------
    backend:
        ``"numpy"`` (CPU) or ``"cupy"`` (GPU: xpdiff gets CuPy inputs, JAX and
        torch run on their GPU device).
    threads:
        CPU threads for torch (``set_num_threads``) and, when 1, for XLA
        (single-threaded Eigen); ``None`` keeps every library's default.
        NumPy's BLAS is limited by :func:`xpdiff.bench.run` via threadpoolctl.
    """

    backend: str = "numpy"
    threads: int | None = None
    _mods: dict[str, Any] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in ("numpy", "cupy"):
            raise ValueError(f"backend must be 'numpy' or 'cupy', not {self.backend!r}")

    # ------------------------------------------------------------------ loading
    def _load(self, lib: str) -> Any:
        if lib in self._mods:
            return self._mods[lib]
        if lib in self._errors:
            raise PeerUnavailable(self._errors[lib])
        try:
            mod = getattr(self, f"_load_{lib}")()
        except PeerUnavailable as exc:
            self._errors[lib] = str(exc)
            raise
        except Exception as exc:  # ImportError and anything a broken install raises
            self._errors[lib] = f"{type(exc).__name__}: {exc}"
            raise PeerUnavailable(self._errors[lib]) from exc
        self._mods[lib] = mod
        return mod

    def _load_cupy(self) -> Any:
        return importlib.import_module("cupy")

    def _load_xpdiff(self) -> Any:
        xd = importlib.import_module("xpdiff")
        missing = [
            name for name in ("jacobian", "jacfwd", "jacrev", "hessian", "grad") if not hasattr(xd, name)
        ]
        if missing:
            raise PeerUnavailable(f"xpdiff core not ready (missing {', '.join(missing)})")
        if self.backend == "cupy":
            self._load("cupy")
        return xd

    def _load_jax(self) -> Any:
        if self.backend == "numpy" and "jax" not in sys.modules:
            # Avoid probing for accelerators when benchmarking the CPU.
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if self.threads == 1 and "jax" not in sys.modules:
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            ).strip()
        if self.backend == "cupy":  # grow JAX's pool on demand: the other peers share the GPU
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        jax = importlib.import_module("jax")
        jax.config.update("jax_enable_x64", True)  # float64 workloads stay float64
        if self.backend == "cupy":
            gpus = [d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
            if not gpus:
                raise PeerUnavailable("jax has no GPU device")
            device = gpus[0]
        else:
            device = jax.devices("cpu")[0]
        jax_numpy = importlib.import_module("jax.numpy")
        return {"jax": jax, "jnp": jax_numpy, "device": device}

    def _load_torch(self) -> Any:
        torch = importlib.import_module("torch")
        func = importlib.import_module("torch.func")
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        if self.backend == "cupy":
            if not torch.cuda.is_available():
                raise PeerUnavailable("torch has no CUDA device")
            device = torch.device("cuda")
        else:
            device = torch.device("cpu")
        return {"torch": torch, "func": func, "ops": TorchOps(torch), "device": device}

    def _load_autograd(self) -> Any:
        autograd = importlib.import_module("autograd")
        anp = importlib.import_module("autograd.numpy")
        ops = importlib.import_module("autograd.differential_operators")
        return {"autograd": autograd, "np": anp, "ops": ops}

    @staticmethod
    def library(peer: str) -> str:
        """Name of the library that backs ``peer``."""
        return {
            "xpdiff-jit": "xpdiff",
            "jax-jit": "jax",
            "torch-backward": "torch",
            "numpy-fwd": "numpy",
            "numpy-closed": "numpy",
        }.get(peer, peer)

    def _load_numpy(self) -> Any:
        return self._load("cupy") if self.backend == "cupy" else np

    def get(self, peer: str) -> Any:
        """Return the loaded library handle for ``peer`` or raise PeerUnavailable."""
        return self._load(self.library(peer))

    def availability(self, peer: str) -> str | None:
        """``None`` when ``peer`` can run, else the reason it cannot."""
        try:
            handle = self.get(peer)
        except PeerUnavailable as exc:
            return str(exc)
        if peer == "xpdiff-jit" and not callable(getattr(handle, "jit", None)):
            return "not available: this version of xpdiff has no xpdiff.jit"
        return None

    # --------------------------------------------------------------- versions
    def versions(self) -> dict[str, str]:
        """Versions of numpy and of every library loaded so far (and xpdiff)."""
        from importlib import metadata

        out: dict[str, str] = {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
        }
        for dist in (
            "xpdiff",
            "jax",
            "jaxlib",
            "torch",
            "autograd",
            "cupy",
            "matplotlib",
        ):
            mod_name = "xpdiff" if dist == "xpdiff" else dist
            if dist != "xpdiff" and mod_name not in sys.modules:
                continue
            version = getattr(sys.modules.get(mod_name), "__version__", None)
            if version is None:
                try:
                    version = metadata.version(dist)
                except metadata.PackageNotFoundError:
                    version = "(source tree)" if mod_name in sys.modules else None
            if version is not None:
                out[dist] = str(version)
        return out

    # ------------------------------------------------------------ array moves
    def put(self, peer: str, array: np.ndarray) -> Any:
        """Move a NumPy input onto the array type ``peer`` computes with."""
        lib = self.library(peer)
        if lib == "jax":
            handle = self.get(peer)
            return handle["jax"].device_put(array, handle["device"])
        if lib == "torch":
            handle = self.get(peer)
            return handle["torch"].from_numpy(np.array(array)).to(handle["device"])
        if lib in ("xpdiff", "numpy") and self.backend == "cupy":
            return self._load("cupy").asarray(array)
        return array

    def sync(self, peer: str, out: Any) -> None:
        """Wait until ``out`` (the result of one call for ``peer``) is computed."""
        lib = self.library(peer)
        if lib == "jax":
            self.get(peer)["jax"].block_until_ready(out)
        elif lib == "torch":
            handle = self.get(peer)
            if handle["device"].type == "cuda":
                handle["torch"].cuda.synchronize()
        elif self.backend == "cupy" and lib in ("xpdiff", "numpy"):
            self._load("cupy").cuda.get_current_stream().synchronize()


def to_numpy(out: Any) -> list[np.ndarray]:
    """Flatten a result (array or nested tuple/list/dict of arrays) to NumPy arrays."""
    if isinstance(out, dict):
        return [a for key in sorted(out) for a in to_numpy(out[key])]
    if isinstance(out, (tuple, list)):
        return [a for item in out for a in to_numpy(item)]
    if hasattr(out, "detach") and hasattr(out, "cpu"):  # torch.Tensor
        return [out.detach().cpu().numpy()]
    if type(out).__module__.startswith("cupy"):
        return [out.get()]
    return [np.asarray(out)]
