"""Does ``jacobian(mode="auto")`` pick the faster mode?  Times ``jacfwd`` and
``jacrev`` of xpdiff on the Jacobian workloads of the benchmark and reports the
mode ``auto`` picks next to the measured times (``xpdiff bench --modes``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .timing import median_time
from .workloads import bmm, elementwise, make_workload, mixing_map, mlp, per_sample_loss, softmax

# name -> (body, batched argument names, constant names, argnums, batch_ndim)
CASES: dict[str, tuple[Callable, list[str], list[str], int, int]] = {
    "elementwise-jac": (elementwise, ["x"], [], 0, 1),
    "mlp-jac": (mlp, ["x"], ["w1", "b1", "w2", "b2"], 0, 1),
    "bmm-jac": (bmm, ["u", "v"], [], 0, 1),
    "softmax-jac": (softmax, ["x"], [], 0, 1),
    "full-jac-fwd": (mixing_map, ["x"], ["a"], 0, 0),
    "per-sample-grad": (per_sample_loss, ["x", "w"], [], 1, 1),
}


def case_function(name: str, size: str) -> tuple[Callable, list, int, int, dict]:
    """``(f, args, argnums, batch_ndim, inputs)`` of a case on xpdiff's NumPy namespace."""
    import xpdiff as xd

    body, batched, consts, argnums, k = CASES[name]
    inputs = make_workload(name, size).make_inputs(np.random.default_rng(0))
    cargs = [inputs[c] for c in consts]

    def f(*a: Any) -> Any:
        return body(xd.numpy, *a, *cargs)

    return f, [inputs[b] for b in batched], argnums, k, inputs


def run_modes(sizes: tuple[str, ...] = ("small", "large"), repeat: int = 5) -> list[dict]:
    """Time fwd and rev for each case; return rows with the mode ``auto`` picks."""
    import xpdiff as xd
    from xpdiff.transforms.api import auto_mode

    rows = []
    for name in CASES:
        for size in sizes:
            f, args, argnums, k, _ = case_function(name, size)
            kw = {"argnums": argnums, "batch_ndim": k}
            t_fwd = median_time(lambda: xd.jacfwd(f, **kw)(*args), repeat)
            t_rev = median_time(lambda: xd.jacrev(f, **kw)(*args), repeat)
            pick = auto_mode(f, tuple(args), argnums, False, k)
            faster = "fwd" if t_fwd <= t_rev else "rev"
            rows.append({"workload": name, "size": size, "fwd": t_fwd, "rev": t_rev,
                         "auto": pick, "faster": faster,
                         "cost": (t_fwd if pick == "fwd" else t_rev) / min(t_fwd, t_rev)})
    return rows


def markdown(rows: list[dict]) -> str:
    from .report import format_time

    lines = ["# jacobian(mode=\"auto\") against the measured modes", "",
             "`auto` picks forward mode when the per-sample input size is below the per-sample "
             "output size, reverse mode when above; at equal sizes, reverse mode when its sweep "
             "keeps the identity basis structured through every recorded operation, else "
             "forward (see docs/performance.md). Times are medians of xpdiff's `jacfwd` and "
             "`jacrev` in one run; *cost* is the picked mode's time over the faster one's.", "",
             "| workload | size | jacfwd | jacrev | auto picks | faster | cost |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['size']} | {format_time(r['fwd'])} | "
                     f"{format_time(r['rev'])} | {r['auto']} | {r['faster']} | {r['cost']:.2f}× |")
    right = sum(r["auto"] == r["faster"] or r["cost"] < 1.1 for r in rows)
    lines += ["", f"`auto` picks the faster mode (or one within 10% of it) in {right} of "
              f"{len(rows)} cases."]
    return "\n".join(lines) + "\n"


def write(rows: list[dict], out_dir: str | Path) -> Path:
    path = Path(out_dir) / "modes.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(rows), encoding="utf-8")
    return path
