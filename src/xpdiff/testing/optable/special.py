"""Entries for the ``special`` submodule (erf, gammaln, polygamma, logsumexp, ...).

The functions are called from :mod:`xpdiff.rules.special` directly (they dispatch on
their arguments), because ``fn`` also runs on raw arrays, whose own namespace has no
``special``.  Domains keep away from poles and from the points where a composite
switches branch (``entr`` and ``xlogy`` at 0).
"""

from __future__ import annotations

from ...rules import special as sp
from ._op import Op

S = (3, 4)

OPS: list[Op] = [
    Op("special.erf", lambda xp, x: sp.erf(x), (S,)),
    Op("special.erfc", lambda xp, x: sp.erfc(x), (S,)),
    Op("special.ndtr", lambda xp, x: sp.ndtr(x), (S,), low=-3.0, high=3.0),
    Op("special.log_ndtr", lambda xp, x: sp.log_ndtr(x), (S,), low=-6.0, high=3.0),
    Op("special.expit", lambda xp, x: sp.expit(x), (S,), low=-4.0, high=4.0),
    Op("special.logit", lambda xp, x: sp.logit(x), (S,), low=0.1, high=0.9),
    Op("special.gammaln", lambda xp, x: sp.gammaln(x), (S,), low=0.3, high=6.0),
    Op("special.gammaln_negative", lambda xp, x: sp.gammaln(x), (S,), low=-2.9, high=-2.1),
    Op("special.digamma", lambda xp, x: sp.digamma(x), (S,), low=0.5, high=5.0),
    Op("special.digamma_negative", lambda xp, x: sp.digamma(x), (S,), low=-0.9, high=-0.1),
    Op("special.polygamma", lambda xp, x: sp.polygamma(1, x) + sp.polygamma(2, x), (S,),
       low=0.5, high=4.0),
    Op("special.entr", lambda xp, x: sp.entr(x), (S,), low=0.1, high=2.0),
    Op("special.xlogy", lambda xp, x, y: sp.xlogy(x, y), (S, S), low=(-2.0, 0.5),
       high=(2.0, 2.0)),
    Op("special.xlogy_broadcast", lambda xp, x, y: sp.xlogy(x, y), (S, (4,)), low=(-2.0, 0.5),
       high=(2.0, 2.0), batched=False),
    Op("special.xlog1py", lambda xp, x, y: sp.xlog1py(x, y), (S, S), low=(-2.0, -0.5),
       high=(2.0, 2.0)),
    Op("special.logsumexp", lambda xp, x: sp.logsumexp(x, axis=-1), (S,)),
    Op("special.logsumexp_b", lambda xp, x, b: sp.logsumexp(x, axis=-1, b=b, keepdims=True),
       (S, S), low=(-2.0, 0.5), high=(2.0, 2.0)),
    Op("special.logsumexp_all", lambda xp, x: sp.logsumexp(x * 30.0), (S,), batched=False),
    Op("special.softmax", lambda xp, x: sp.softmax(x, axis=-1), (S,)),
    Op("special.softmax_all", lambda xp, x: sp.softmax(x), (S,), batched=False),
    Op("special.log_softmax", lambda xp, x: sp.log_softmax(x, axis=-2), (S,)),
]
