"""Reporting: the business KPIs, pipeline throughput and latency, delivery listings, the
terminal tables and the self-contained HTML report.

May import every layer below; never the entry points.
"""
