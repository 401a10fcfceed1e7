"""The interpreters: one trace type per transformation.

Layer: interpreters (above ``xpdiff.tracer``).  May import: ``xpdiff.core``,
``xpdiff.tracer`` and each other in this order: ``batching`` and ``dataview``
(independent), ``structured`` (the identity-basis algebra shared by both modes),
``forward`` (JVP), ``reverse`` (the tape).  Rules are not known here: an
interpreter applies ``Primitive`` rules through ``xpdiff.core``.
"""
