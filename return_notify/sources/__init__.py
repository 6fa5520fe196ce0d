"""Ways in from systems that already exist: carrier tracking webhooks, YAML-mapped WMS/ERP
feeds and a Redis Stream for producers in any language.

* ``easypost``, ``aftership``, ``shippo``: verify a provider's webhook and normalise it to a
  ``CarrierUpdate`` (``base``); ``carrier_events`` matches it to a return and builds our event.
* ``tracking``: the tracking number → return index, filled from our own label events.
* ``mapping``: declarative per-source YAML mappings (``mappings/*.yaml`` are examples).
* ``streams``: the ``XREADGROUP`` listener that feeds the ingest task.

Nothing here connects at import time. May import: the domain, ``storage``,
``observability``, ``core``, ``config``; never ``pipeline``, ``api``, ``tasks`` or ``cli``.
"""

from __future__ import annotations
