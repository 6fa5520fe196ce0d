"""`return-notify report`: a self-contained HTML file whose charts show the KPIs' numbers,
rendered by a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from return_notify.kpis import compute_kpis
from return_notify.storage.db import session_scope
from tests.helpers import event, uid

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: the operator commands without relying on how cli.py registers them
OPS_CLI = "import typer; from return_notify.cli_ops import register; a = typer.Typer(); " \
          "register(a); a()"


def run_ops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", OPS_CLI, *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


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


@pytest.fixture(scope="module")
def report_file(services: Any, tmp_path_factory: Any) -> tuple[Path, str, dict[str, Any]]:
    from return_notify.channels.registry import get_channel
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    t = uid("t-")
    base = datetime.now(UTC) - timedelta(minutes=10)
    evs = []
    for r in range(6):
        rid = f"RMA-{t}-{r}"
        steps = ["return_initiated", "return_approved", "label_created", "in_transit",
                 "refund_processed"][: 2 + r % 4]
        evs += [event(m, tenant=t, return_id=rid, at=base + timedelta(seconds=i))
                for i, m in enumerate(steps)]
    evs.append(event("label_created", tenant=t, email="fail-permanent@example.com", at=base))
    with session_scope() as s:
        ids = dict(ingest_batch(s, evs).deliveries)
    for ch, dids in ids.items():
        deliver_batch(session_scope, ch, dids, get_channel(ch), get_settings())
    out = tmp_path_factory.mktemp("report") / "report.html"
    proc = run_ops("report", "--out", str(out), "--tenant", t, "--title", "Acme returns",
                   env=services.env())
    assert proc.returncode == 0, proc.stderr + proc.stdout
    with session_scope() as s:
        k = compute_kpis(s, tenant=t)
    return out, t, k


def test_report_is_self_contained_and_its_charts_carry_the_kpis(
    svc: Any, report_file: tuple[Path, str, dict[str, Any]],
) -> None:
    # given
    path, tenant, k = report_file
    html = path.read_text()
    # when
    parsed = Charts()
    parsed.feed(html)
    # then: no external resources (it must open offline)
    assert parsed.external == [] and "http://" not in html.split("<script")[0].replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert set(parsed.charts) == {"throughput", "latency", "success", "funnel", "load"}
    data = json.loads(parsed.data)
    assert data["filters"]["tenant"] == tenant and data["success"] == k["success"]
    # success by channel: one bar per channel, value = success rate in %
    success = {m["data-label"]: float(m["data-value"]) for m in parsed.charts["success"]}
    assert success == {r["key"]: (r["success_rate"] or 0) * 100
                       for r in k["success"]["by_channel"]}
    assert success["email"] < 100 == success["inapp"]  # the fail-permanent address
    # the funnel: returns reaching each milestone, decreasing
    funnel = [(m["data-label"], float(m["data-value"])) for m in parsed.charts["funnel"]]
    assert funnel == [(f["milestone"], float(f["returns"])) for f in k["funnel"]]
    assert funnel[0][1] == 6 and funnel[1][1] == 6 and funnel[2][1] == 4
    # latency histogram: every sent notification in one bucket
    assert sum(float(m["data-value"]) for m in parsed.charts["latency"]) == \
        k["latency_s"]["all"]["to_sent"]["n"] > 0
    # throughput: the sent series adds up to the notifications sent
    size = k["throughput"]["bucket_s"]
    sent = [float(m["data-value"]) * size for m in parsed.charts["throughput"]
            if m.get("data-series") == "notifications sent/s"]
    assert round(sum(sent)) == sum(p["sent"] for p in k["throughput"]["points"])
    assert "Acme returns" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
                    " so the report cannot be rendered in a real browser here")
def test_report_renders_in_headless_chromium(
    svc: Any, report_file: tuple[Path, str, dict[str, Any]], tmp_path: Path,
) -> None:
    # given
    path, _, _ = report_file
    assert CHROMIUM is not None
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    # when: the browser lays the page out and runs its measuring script
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=90)
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=900,2600", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, text=True, timeout=90)
    # then: every chart drew its marks at a real size
    marker = 'data-rendered="'
    assert marker in dom.stdout, dom.stderr[-2000:]
    raw = dom.stdout.split(marker, 1)[1].split('"', 1)[0].replace("&quot;", '"')
    rendered = json.loads(raw)
    assert set(rendered) == {"throughput", "latency", "success", "funnel", "load"}
    for chart, r in rendered.items():
        assert r["marks"] > 0 and r["width"] > 300 and r["height"] > 40, (chart, r)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_png_pixels(png)) > 40  # many colours: text, bars and lines, not a blank page


def _png_pixels(png: bytes) -> set[bytes]:
    """Distinct 3-byte runs of the decompressed image data (enough to tell blank pages)."""
    pos, idat = 8, b""
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        kind = png[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return {raw[i:i + 3] for i in range(0, min(len(raw), 3_000_000), 3)}
