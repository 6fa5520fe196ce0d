"""Channels: one module per provider behind the small ``Channel`` interface (base.py)."""
