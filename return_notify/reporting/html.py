"""`return-notify report`: one self-contained HTML file (inline SVG charts, no network).

Charts: throughput over time, latency distribution, success by channel, the return funnel,
load by hour of day; then the KPI tables; then, given the ``insights`` object, the insight
sections (``html_insights``: satisfaction by timeliness, channel preference, where the
time goes). Every chart mark carries ``data-label`` and
``data-value``, and the whole KPI dict is embedded as JSON (``#rsn-report-data``) so the
numbers can be checked or re-used. A few lines of inline script record, once the page is
laid out, how many marks each chart drew (``body[data-rendered]``) and how many rows each
insight table laid out (``body[data-rendered-tables]``), for headless checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from return_notify.reporting.html_base import H, W, _figure, _pct, _secs
from return_notify.reporting.html_insights import CSS as INSIGHT_CSS
from return_notify.reporting.html_insights import insight_sections

PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 16, 44
COLORS = {"events": "#6b7280", "sent": "#2563eb", "ok": "#16a34a", "bad": "#dc2626",
          "bar": "#2563eb", "funnel": "#7c3aed", "load": "#0891b2"}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#111827;
background:#f9fafb}main{max-width:780px;margin:0 auto;padding:24px}h1{font-size:22px;margin:0 0 4px}
.sub{color:#6b7280;margin:0 0 16px}.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 18px}
.tile{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:130px}
.tile b{display:block;font-size:20px}.tile span{color:#6b7280;font-size:12px}
figure{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:0 0 16px;padding:12px}
figcaption{font-weight:600;margin:0 0 6px}svg{display:block;width:100%;height:auto}
svg text{font-size:11px;fill:#374151}.axis{stroke:#9ca3af;stroke-width:1}.grid{stroke:#f3f4f6}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.legend i{display:inline-block;
width:10px;height:10px;margin-right:4px;border-radius:2px}table{border-collapse:collapse;width:100%;
background:#fff;margin:0 0 16px;font-size:13px}th,td{border:1px solid #e5e7eb;padding:4px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}caption{text-align:left;
font-weight:600;padding:6px 0}.empty{fill:#9ca3af;font-size:13px}
"""

_JS = """
addEventListener('load',function(){var r={};document.querySelectorAll('figure.chart').forEach(
function(f){var n=0;f.querySelectorAll('[data-value]').forEach(function(m){var b=m.getBBox?
m.getBBox():m.getBoundingClientRect();if(b.width>0||b.height>0)n++;});var s=f.querySelector('svg')
.getBoundingClientRect();r[f.dataset.chart]={marks:n,width:Math.round(s.width),
height:Math.round(s.height)};});document.body.setAttribute('data-rendered',JSON.stringify(r));
var t={};document.querySelectorAll('section.insight table').forEach(function(x){var n=0;
x.querySelectorAll('tr[data-key]').forEach(function(w){if(w.getBoundingClientRect().height>0)n++;});
var b=x.getBoundingClientRect();t[x.id]={rows:n,width:Math.round(b.width),height:Math.round(b.height)};});
document.body.setAttribute('data-rendered-tables',JSON.stringify(t));});
"""


def _num(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.1f}".rstrip("0").rstrip(".") if v % 1 else f"{int(v)}"


def _nice(v: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above ``v`` (a round axis maximum)."""
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    return next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= v)


def _empty() -> str:
    return f'<text class="empty" x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>'


def _axes(max_v: float, unit: str = "") -> str:
    plot_h = H - PAD_T - PAD_B
    out = [f'<line class="axis" x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}"/>']
    for i in range(5):
        v = max_v * i / 4
        y = H - PAD_B - plot_h * i / 4
        out.append(f'<line class="grid" x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(v)}{unit}</text>')
    return "".join(out)


def column_chart(chart: str, title: str, labels: Sequence[str], values: Sequence[float],
                 color: str, unit: str = "", every: int = 1) -> str:
    """Vertical bars, one per label (histograms, load by hour)."""
    if not values or not any(values):
        return _figure(chart, title, _empty())
    max_v = _nice(max(values))
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    slot = plot_w / len(values)
    parts = [_axes(max_v, unit)]
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * v / max_v
        x = PAD_L + i * slot + slot * 0.12
        parts.append(
            f'<rect x="{x:.1f}" y="{H - PAD_B - h:.1f}" width="{slot * 0.76:.1f}" '
            f'height="{max(h, 0.5):.1f}" fill="{color}" data-label="{escape(label)}" '
            f'data-value="{v}"><title>{escape(label)}: {_num(v)}{unit}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + slot * 0.38:.1f}" y="{H - PAD_B + 14}" '
                         f'text-anchor="middle">{escape(label)}</text>')
    return _figure(chart, title, "".join(parts))


def bar_chart(chart: str, title: str, rows: Sequence[tuple[str, float, str]], color: str,
              max_v: float | None = None) -> str:
    """Horizontal bars: (label, value, annotation) per row (success rates, the funnel)."""
    if not rows:
        return _figure(chart, title, _empty())
    top = max_v or max(v for _, v, _ in rows) or 1.0
    label_w, ann_w = 150, 150
    row_h = 26.0
    parts = []
    for i, (label, v, note) in enumerate(rows):
        y = 8 + i * row_h
        w = (W - label_w - ann_w) * v / top
        parts.append(f'<text x="{label_w - 8}" y="{y + row_h * 0.6:.1f}" '
                     f'text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + row_h * 0.15:.1f}" width="{max(w, 0.5):.1f}" '
                     f'height="{row_h * 0.7:.1f}" fill="{color}" data-label="{escape(label)}" '
                     f'data-value="{v}"><title>{escape(label)}: {escape(note)}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + row_h * 0.6:.1f}">'
                     f"{escape(note)}</text>")
    return _figure(chart, title, "".join(parts), height=16 + row_h * len(rows))


def line_chart(chart: str, title: str, times: Sequence[str],
               series: dict[str, tuple[Sequence[float], str]], unit: str = "") -> str:
    """Lines over time (throughput); ``series``: name -> (values, color)."""
    if not times:
        return _figure(chart, title, _empty())
    max_v = _nice(max((max(vals) for vals, _ in series.values() if vals), default=0.0))
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    step = plot_w / max(1, len(times) - 1)
    parts = [_axes(max_v, unit)]
    for name, (vals, color) in series.items():
        pts = [(PAD_L + i * step, H - PAD_B - plot_h * v / max_v) for i, v in enumerate(vals)]
        if len(pts) == 1:
            pts.append((W - PAD_R, pts[0][1]))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        for i, v in enumerate(vals):
            x, y = pts[i]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}" '
                         f'data-series="{escape(name)}" data-label="{escape(times[i])}" '
                         f'data-value="{v}"><title>{escape(times[i])} {escape(name)}: '
                         f"{_num(v)}{unit}</title></circle>")
    for i in sorted({0, len(times) // 2, len(times) - 1}):
        anchor = "start" if i == 0 else "end" if i == len(times) - 1 else "middle"
        parts.append(f'<text x="{PAD_L + i * step:.1f}" y="{H - PAD_B + 14}" '
                     f'text-anchor="{anchor}">{escape(times[i])}</text>')
    legend = {name: color for name, (_, color) in series.items()}
    return _figure(chart, title, "".join(parts), legend)


def _edge_label(a: float, b: float | None) -> str:
    def f(s: float) -> str:
        if s < 1:
            return f"{s * 1000:.0f}ms"
        if s < 60:
            return f"{s:g}s"
        return f"{s / 60:g}m" if s < 3600 else f"{s / 3600:g}h"

    return f"≥{f(a)}" if b is None else f"{f(a)}–{f(b)}"


def charts(k: dict[str, Any]) -> list[str]:
    """The report's charts from ``kpis.compute_kpis`` output."""
    thr = k["throughput"]
    size = thr["bucket_s"] or 1
    fmt = {"second": 19, "minute": 16, "hour": 13, "day": 10}.get(thr["bucket"] or "", 16)
    times = [p["t"][:fmt].replace("T", " ") for p in thr["points"]]
    out = [line_chart(
        "throughput", f"Throughput over time (per second, {thr['bucket'] or '-'} buckets)", times,
        {"events received/s": ([p["events"] / size for p in thr["points"]], COLORS["events"]),
         "notifications sent/s": ([p["sent"] / size for p in thr["points"]], COLORS["sent"])})]
    hist = k["latency_histogram"]
    edges = hist["edges_s"]
    labels = [_edge_label(a, edges[i + 1] if i + 1 < len(edges) else None)
              for i, a in enumerate(edges)]
    out.append(column_chart("latency", "Latency distribution: occurred_at → sent (notifications)",
                            labels, hist["counts"], COLORS["bar"], every=2))
    rows = [(r["key"], (r["success_rate"] or 0.0) * 100,
             f"{_pct(r['success_rate'])} ({r['sent']:,} of {r['sent'] + r['failed'] + r['dead']:,})")
            for r in k["success"]["by_channel"]]
    out.append(bar_chart("success", "Delivery success rate by channel", rows, COLORS["ok"],
                         max_v=100.0))
    funnel = [(f["milestone"], float(f["returns"]), f"{f['returns']:,} ({_pct(f['share'])})")
              for f in k["funnel"]]
    out.append(bar_chart("funnel", "Return funnel: returns initiated that reached each milestone",
                         funnel if any(v for _, v, _ in funnel) else [], COLORS["funnel"]))
    out.append(column_chart("load", "Load: events received per hour of day (UTC)",
                            [f"{h:02d}" for h in range(24)], k["load"]["by_hour_utc"],
                            COLORS["load"], every=3))
    return out


def _table(caption: str, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><caption>{escape(caption)}</caption><tr>{th}</tr>{body}</table>"


def tables(k: dict[str, Any]) -> list[str]:
    out = []
    succ = []
    for dim in ("by_channel", "by_provider", "by_tenant", "by_region"):
        for r in k["success"][dim]:
            succ.append((dim[3:], r["key"], f"{r['sent']:,}", f"{r['failed']:,}", f"{r['dead']:,}",
                         f"{r['not_sent']:,}", f"{r['in_flight']:,}", _pct(r["success_rate"])))
    out.append(_table("Delivery success", ("by", "value", "sent", "failed", "dead", "not sent",
                                           "in flight", "success"), succ))
    lat = [("all", k["latency_s"]["all"]), *sorted(k["latency_s"]["by_channel"].items())]
    out.append(_table("Time from occurred_at", ("channel", "→ sent avg", "p50", "p95",
                                                "→ delivered avg", "p50", "p95"),
                      [(n, _secs(v["to_sent"]["avg"]), _secs(v["to_sent"]["p50"]),
                        _secs(v["to_sent"]["p95"]), _secs(v["to_delivered"]["avg"]),
                        _secs(v["to_delivered"]["p50"]), _secs(v["to_delivered"]["p95"]))
                       for n, v in lat]))
    comp = k["completion"]
    out.append(_table(f"Return completion per {comp['period']} of initiation",
                      (comp["period"], "initiated", "completed", "rejected", "cancelled", "rate"),
                      [(p["period"], p["initiated"], p["completed"], p["rejected"],
                        p["cancelled"], _pct(p["rate"]))
                       for p in [*comp["periods"], {**comp["total"], "period": "total"}]]))
    out.append(_table("Engagement per milestone and channel",
                      ("milestone", "channel", "sent", "delivered", "undelivered", "bounced",
                       "read", "read rate"),
                      [(e["milestone"], e["channel"], e["sent"], e["delivered"], e["undelivered"],
                        e["bounced"], e["read"], _pct(e["read_rate"])) for e in k["engagement"]]))
    return out


def render_report(k: dict[str, Any], title: str = "return-notify report",
                  generated_at: datetime | None = None,
                  insights: dict[str, Any] | None = None) -> str:
    """The whole HTML document (with the insight sections when ``insights`` is given)."""
    when = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
    f = k["filters"]
    scope = ", ".join(x for x in (f"since {f['since']}" if f["since"] else "all time",
                                  f"tenant {f['tenant']}" if f["tenant"] else "all tenants") if x)
    sent = sum(r["sent"] for r in k["success"]["by_channel"])
    settled = sum(r["sent"] + r["failed"] + r["dead"] for r in k["success"]["by_channel"])
    lat = k["latency_s"]["all"]["to_sent"]
    tiles = [("events received", f"{k['load']['events']:,}"), ("notifications sent", f"{sent:,}"),
             ("success rate", _pct(sent / settled if settled else None)),
             ("occurred → sent p50", _secs(lat["p50"])), ("p95", _secs(lat["p95"])),
             ("return completion", _pct(k["completion"]["total"]["rate"]))]
    tile_html = "".join(f'<div class="tile"><b>{escape(v)}</b><span>{escape(n)}</span></div>'
                        for n, v in tiles)
    data = json.dumps({**k, "insights": insights} if insights is not None else k,
                      default=str).replace("</", "<\\/")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width\"><title>{escape(title)}</title>"
        f"<style>{_CSS}{INSIGHT_CSS}</style></head><body><main><h1>{escape(title)}</h1>"
        f'<p class="sub">Generated {escape(when)} · {escape(scope)}</p>'
        f'<div class="tiles">{tile_html}</div>{"".join(charts(k))}{"".join(tables(k))}'
        f"{insight_sections(insights)}</main>"
        f'<script type="application/json" id="rsn-report-data">{data}</script>'
        f"<script>{_JS}</script></body></html>\n"
    )
