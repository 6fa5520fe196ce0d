"""Parsers of the HTML report for its tests: the charts' marks and the embedded data, and
the insight sections' tables."""

from __future__ import annotations

from html.parser import HTMLParser


class Charts(HTMLParser):
    """Collects each chart's marks (data-label, data-value, data-series) and the JSON data."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, list[dict[str, str]]] = {}
        self.current: str | None = None
        self.data = ""
        self._in_data = False
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "figure" and "data-chart" in a:
            self.current = a["data-chart"]
            self.charts[self.current] = []
        elif "data-value" in a and self.current:
            self.charts[self.current].append(a)
        if tag == "script" and a.get("id") == "rsn-report-data":
            self._in_data = True
        if a.get("src") or (tag == "link" and a.get("href")):
            self.external.append(a.get("src") or a.get("href", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.current = None
        if tag == "script":
            self._in_data = False

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data += data


INSIGHT_TABLES = ("table-satisfaction-band", "table-satisfaction-updates", "table-channels",
                  "table-recommendations", "table-time-split")


class Tables(HTMLParser):
    """Rows (their cells' text) of every table with an id, by id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.sections: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section" and "insight" in a.get("class", "").split():
            self.sections.append(a["id"])
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table and "data-key" in a:
            self.tables[self._table].append([])
        elif tag == "td" and self._table and self.tables[self._table]:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
