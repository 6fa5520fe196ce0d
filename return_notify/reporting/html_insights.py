"""The HTML report's insight sections (``html.render_report`` adds them): satisfaction by
time to status update (a chart of the mean score per band with its 95 % interval, and
tables by band and by number of updates), channel preference with the recommended order,
and where the time goes (source lag vs pipeline).

Input: the ``insights`` object of ``insight_summary.insights_summary``. Every section is a
``<section class="insight" id="insight-…">``; every table has an id and its rows
``data-key`` attributes, so the numbers can be checked as rendered. The chart's bars carry
``data-label``/``data-value`` (the mean) and ``data-low``/``data-high`` (the interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from return_notify.reporting.html_base import W, _figure, _pct, _secs

CSS = """
section.insight{margin:26px 0 0}section.insight h2{font-size:18px;margin:0 0 4px}
section.insight p{color:#4b5563;margin:0 0 10px}.whisker{stroke:#111827;stroke-width:1.5}
section.insight td{white-space:nowrap}#table-recommendations td{text-align:left}
#table-recommendations td:last-child{white-space:normal}#table-channels td:nth-child(2),
#table-time-split td:nth-child(2){text-align:left}
"""
SATISFACTION = "#ea580c"


def _ci(m: dict[str, Any] | None, pct: bool = False) -> str:
    if not m or m["value"] is None:
        return "–"
    f = (lambda v: f"{v * 100:.0f} %") if pct else (lambda v: f"{v:.2f}")
    if m["low"] is None:
        return f(m["value"])
    sep = " to " if m["low"] < 0 else "–"  # a dash between negative numbers reads as minus
    return f"{f(m['value'])} ({f(m['low'])}{sep}{f(m['high'])})"


def _table(table_id: str, caption: str, head: Sequence[str],
           rows: Sequence[tuple[str, Sequence[Any]]]) -> str:
    """A table whose rows carry ``data-key`` (the first element of each row pair)."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(f'<tr data-key="{escape(key)}">'
                   + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>"
                   for key, cells in rows)
    return (f'<table id="{table_id}"><caption>{escape(caption)}</caption><tr>{th}</tr>'
            f"{body}</table>")


def score_chart(bands: Sequence[dict[str, Any]]) -> str:
    """Mean satisfaction score (1–5) per time band: a bar each, its 95 % interval as a
    whisker, and the number of ratings."""
    rows = [b for b in bands if b["mean_score"]["value"] is not None]
    title = "Satisfaction by time to status update: mean score (1–5), 95 % interval"
    if not rows:
        return _figure("satisfaction", title, '<text class="empty" x="360" y="40" '
                       'text-anchor="middle">no rated returns</text>', height=70)
    label_w, ann_w, row_h = 110, 190, 30.0
    span = W - label_w - ann_w

    def x(v: float) -> float:
        return label_w + span * max(0.0, min(5.0, v)) / 5.0

    parts = []
    for i, b in enumerate(rows):
        m, y = b["mean_score"], 8 + i * row_h
        mid = y + row_h * 0.5
        parts.append(f'<text x="{label_w - 8}" y="{mid + 4:.1f}" text-anchor="end">'
                     f"{escape(b['band'])}</text>")
        parts.append(f'<rect x="{label_w}" y="{y + row_h * 0.18:.1f}" '
                     f'width="{max(x(m["value"]) - label_w, 0.5):.1f}" height="{row_h * 0.64:.1f}" '
                     f'fill="{SATISFACTION}" data-label="{escape(b["band"])}" '
                     f'data-value="{m["value"]}" data-low="{m["low"]}" data-high="{m["high"]}" '
                     f'data-n="{b["n"]}"><title>{escape(b["band"])}: {_ci(m)}, '
                     f'n = {b["n"]:,}</title></rect>')
        if m["low"] is not None:
            lo, hi = x(m["low"]), x(m["high"])
            parts.append(f'<line class="whisker" x1="{lo:.1f}" y1="{mid:.1f}" x2="{hi:.1f}" '
                         f'y2="{mid:.1f}"/><line class="whisker" x1="{lo:.1f}" '
                         f'y1="{mid - 6:.1f}" x2="{lo:.1f}" y2="{mid + 6:.1f}"/>'
                         f'<line class="whisker" x1="{hi:.1f}" y1="{mid - 6:.1f}" '
                         f'x2="{hi:.1f}" y2="{mid + 6:.1f}"/>')
        parts.append(f'<text x="{label_w + span + 8:.1f}" y="{mid + 4:.1f}">'
                     f"{escape(_ci(m))}, n = {b['n']:,}</text>")
    height = 16 + row_h * len(rows) + 18
    for v in range(1, 6):
        parts.append(f'<text x="{x(v):.1f}" y="{height - 6:.1f}" text-anchor="middle">{v}</text>')
    return _figure("satisfaction", title, "".join(parts), height=height)


def _effectiveness(eff: dict[str, Any] | None) -> str:
    if eff is None:
        return ""
    group = eff["groups"][0] if eff["groups"] else None
    intro = (f"{eff['rated_returns']:,} rated returns. A return's time to status update is "
             "the median, over its notified events, of occurred_at → the first message sent; "
             "its updates, how many of its events reached the customer.")
    if group is None:
        return ('<section class="insight" id="insight-effectiveness"><h2>Do timely updates '
                "raise satisfaction?</h2><p>No rated returns in this window: switch the "
                "survey on (<code>return-notify insights settings --survey</code>) or send "
                "scores (<code>POST /v1/returns/{id}/satisfaction</code>).</p></section>")
    head = ("rated", "mean score (95 % CI)", "satisfied 4–5 (95 % CI)", "1", "2", "3", "4",
            "5")

    def cells(b: dict[str, Any]) -> list[Any]:
        return [f"{b['n']:,}", _ci(b["mean_score"]), _ci(b["satisfied_share"], pct=True),
                *(b["scores"][str(k)] for k in range(1, 6))]

    rho, effect = group["time_vs_score"]["spearman_rho"], group["effect"]
    notes = []
    if rho["value"] is not None:
        notes.append(f"Spearman's ρ between time to update and score: {_ci(rho)} "
                     f"(n = {rho['n']:,}).")
    if effect and effect["difference"] is not None:
        notes.append(f"The fastest band ({effect['fastest_band']}) scores "
                     f"{effect['difference']:+.2f} against the slowest "
                     f"({effect['slowest_band']}), "
                     + ("beyond their intervals." if effect["separated"]
                        else "within their intervals (not a clear difference)."))
    return ('<section class="insight" id="insight-effectiveness"><h2>Do timely updates raise '
            f"satisfaction?</h2><p>{escape(intro)}</p>"
            + score_chart(group["by_time_to_update"])
            + "".join(f"<p>{escape(n)}</p>" for n in notes)
            + _table("table-satisfaction-band", "Satisfaction by time to status update",
                     ("time to update", *head),
                     [(b["band"], [b["band"], *cells(b)]) for b in group["by_time_to_update"]])
            + _table("table-satisfaction-updates", "Satisfaction by number of updates",
                     ("updates", *head),
                     [(b["updates"], [b["updates"], *cells(b)]) for b in group["by_updates"]])
            + "</section>")


def _channels(pref: dict[str, Any] | None) -> str:
    if pref is None:
        return ""
    rows = [(f"{r['milestone']}/{r['channel']}",
             [r["milestone"], r["channel"], f"{r['sent']:,}", f"{r['tracked']:,}",
              _ci(r["open_rate"], True), _ci(r["click_rate"], True), _ci(r["read_rate"], True)])
            for r in pref["channels"]]
    recs = []
    for r in pref["recommendations"]:
        evidence = [f"{e['channel']} {e['clicked']:,}/{e['tracked']:,} clicked "
                    f"({_ci(e['click_rate'], True)})" for e in r["evidence"]]
        evidence += [f"{x['channel']} only {x['tracked']:,} tracked" for x in r["insufficient"]]
        clear = {True: "yes", False: "no", None: "–"}[r["clear_winner"]]
        recs.append((r["milestone"], [r["milestone"], " > ".join(r["order"]) or "–", clear,
                                      "; ".join(evidence)]))
    return ('<section class="insight" id="insight-channels"><h2>Which channel works at which '
            "stage?</h2><p>Per milestone and channel: notifications sent (one per return, "
            "milestone and channel), those sent while tracking was on, and the share opened "
            "(email), clicked and read (in-app), with 95 % intervals. Channels are ranked by "
            "click rate, by the low end of its interval, once they have "
            f"{pref['recommendations'][0]['min_sample'] if pref['recommendations'] else 30} "
            "tracked notifications; apply an order with <code>return-notify insights "
            "apply-recommendation</code>.</p>"
            + _table("table-channels", "Engagement per milestone and channel",
                     ("milestone", "channel", "sent", "tracked", "opened", "clicked", "read"),
                     rows)
            + _table("table-recommendations", "Recommended channel order per milestone",
                     ("milestone", "order", "clear winner", "evidence"), recs)
            + "</section>")


def _timing(split: list[dict[str, Any]] | None) -> str:
    if split is None:
        return ""
    rows = []
    for r in split:
        source = "all" if r["source"] is None else (r["source"] or "(none)")
        channel = r["channel"] or "all"
        lag, own, tot = r["source_lag_s"], r["pipeline_s"], r["total_s"]
        rows.append((f"{source}/{channel}",
                     [source, channel, f"{r['n']:,}", _secs(lag["p50"]), _secs(lag["p95"]),
                      _secs(own["p50"]), _secs(own["p95"]), _secs(tot["p50"]),
                      _pct(r["upstream_share"])]))
    return ('<section class="insight" id="insight-timing"><h2>Where does the time go?</h2>'
            "<p>Time to status update split into the source's lag (occurred_at → received_at: "
            "the WMS, ERP or carrier) and the pipeline's own (received_at → sent), per source "
            "and channel; upstream share = the source lag's part of the summed total.</p>"
            + _table("table-time-split", "Source lag vs pipeline",
                     ("source", "channel", "n", "lag p50", "lag p95", "pipeline p50",
                      "pipeline p95", "total p50", "upstream share"), rows)
            + "</section>")


def insight_sections(ins: dict[str, Any] | None) -> str:
    """The sections of the parts ``ins`` holds (empty string for None)."""
    if not ins:
        return ""
    limits, capped = ins.get("limits", {}), ins.get("capped", {})
    note = []
    if capped.get("effectiveness"):
        note.append(f"the latest {limits['ratings']:,} ratings")
    if capped.get("channels") or capped.get("timing"):
        note.append(f"the latest {limits['notifications']:,} notifications sent")
    head = ('<p class="sub" id="insight-sample">Insights over '
            + escape(" and ".join(note)) + " of the window.</p>") if note else ""
    return (head + _effectiveness(ins.get("effectiveness"))
            + _channels(ins.get("channel_preference")) + _timing(ins.get("time_split")))
