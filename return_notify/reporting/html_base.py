"""The HTML report's shared pieces: the chart size, number formats and the ``figure`` that
wraps every chart (``html.py`` draws the KPI charts with them, ``html_insights.py`` the
insights')."""

from __future__ import annotations

from html import escape

W, H = 720, 260


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.1f} %"


def _secs(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v * 1000:,.0f} ms" if v < 10 else f"{v:,.1f} s" if v < 600 else f"{v / 60:,.1f} min"


def _figure(chart: str, title: str, body: str, legend: dict[str, str] | None = None,
            height: float = H) -> str:
    leg = ""
    if legend:
        leg = '<div class="legend">' + "".join(
            f'<span><i style="background:{c}"></i>{escape(n)}</span>' for n, c in legend.items()
        ) + "</div>"
    return (f'<figure class="chart" id="chart-{chart}" data-chart="{chart}">'
            f"<figcaption>{escape(title)}</figcaption>{leg}"
            f'<svg viewBox="0 0 {W} {height:.0f}" role="img" aria-label="{escape(title)}">{body}'
            "</svg></figure>")
