"""The pipeline's use cases as plain, typed functions: ingest, deliver (with the pre-send
policy and the rate limiter), maintenance (sweep, dead-letter list), retention, provider
feedback, engagement signals and satisfaction ratings, and template preview. The Celery
tasks in ``tasks/`` are thin wrappers.

May import every layer below (channels, sources, the domain, storage, observability, core,
config); never the entry points (``tasks``, ``workers``, ``api``, ``cli``, ``producer``).
"""
