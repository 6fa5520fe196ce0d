"""Core: pure domain vocabulary with no I/O: the return lifecycle (milestone order and the
notify/stale/repeat decision), regions and categories, recipient masking, SMS segments and
GSM-7, and the one backoff function.

May import: ``events``, ``errors`` and the standard library only. Everything may import it.
"""
