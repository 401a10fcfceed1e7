"""The transformations: public ``grad``/``jvp``/``vjp``/``jacfwd``/``jacrev``/
``jacobian``/``hessian``/``vmap`` (:mod:`.api`), the Jacobian engine behind them
(:mod:`.engine`) and memory-bounded chunking (:mod:`.chunking`).

Layer: transforms (above ``xpdiff.namespaces``).  May import: ``xpdiff.namespaces``
and everything below it.
"""
