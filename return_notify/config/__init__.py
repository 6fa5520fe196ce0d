"""Configuration: the one ``Settings`` (env prefix ``RSN_``), the Celery configuration and
the default notification rules.

May import: ``core``, ``events``, ``errors`` (and Celery/kombu for ``celery.py``). Nothing of
ours above; everything may import it.
"""
