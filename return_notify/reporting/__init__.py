"""Reporting: the business KPIs, pipeline throughput and latency, the insights (satisfaction
by timeliness, channel preference, where the time goes) with their intervals, delivery
listings, the terminal tables and the self-contained HTML report.

May import every layer below; never the entry points.
"""
