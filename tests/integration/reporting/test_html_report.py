"""`return-notify report`: a self-contained HTML file whose charts show the KPIs' numbers and
whose insight sections show the insights', rendered by a real headless browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from return_notify.reporting.kpis import compute_kpis
from return_notify.storage.db import session_scope
from tests.helpers import event, uid
from tests.integration.cli_helpers import run_ops
from tests.integration.reporting.report_html import INSIGHT_TABLES, Charts, Tables

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report_file(services: Any, tmp_path_factory: Any) -> tuple[Path, str, dict[str, Any]]:
    from return_notify.channels.registry import get_channel
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    t = uid("t-")
    now = datetime.now(UTC)
    base = now - timedelta(minutes=10)
    evs = []
    for r in range(6):
        rid = f"RMA-{t}-{r}"
        steps = ["return_initiated", "return_approved", "label_created", "in_transit",
                 "refund_processed"][: 2 + r % 4]
        evs += [event(m, tenant=t, return_id=rid, at=base + timedelta(seconds=i))
                for i, m in enumerate(steps)]
    evs.append(event("label_created", tenant=t, email="fail-permanent@example.com", at=base))
    # rated returns (outside the funnel's cohort: no return_initiated): fast ones scored
    # high, a slow one low, from the retailer's survey on the completion event
    for lag_s, score in ((5, 5), (20, 4), (40, 5), (2 * 86400, 2)):
        evs.append(event("return_completed", tenant=t, at=now - timedelta(seconds=lag_s),
                         data={"satisfaction": score}))
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
    assert set(parsed.charts) == {"throughput", "latency", "success", "funnel", "load",
                                  "satisfaction"}
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


def test_report_shows_the_insights_of_its_tenant(
    svc: Any, report_file: tuple[Path, str, dict[str, Any]],
) -> None:
    # given
    from return_notify.reporting.insight_summary import insights_summary

    path, tenant, _ = report_file
    html = path.read_text()
    with session_scope() as s:
        ins = json.loads(json.dumps(insights_summary(s, tenant=tenant), default=str))
    # when
    charts, tables = Charts(), Tables()
    charts.feed(html)
    tables.feed(html)
    # then: the three insight sections, with the numbers of insights_summary (embedded too)
    assert tables.sections == ["insight-effectiveness", "insight-channels", "insight-timing"]
    assert json.loads(charts.data)["insights"] == ins
    eff = ins["effectiveness"]["groups"][0]
    bars = {m["data-label"]: m for m in charts.charts["satisfaction"]}
    assert list(bars) == ["< 1 min", ">= 1 day"]
    for b in eff["by_time_to_update"]:
        mark = bars[b["band"]]
        assert float(mark["data-value"]) == b["mean_score"]["value"]
        assert mark["data-n"] == str(b["n"])
    assert float(bars["< 1 min"]["data-value"]) > float(bars[">= 1 day"]["data-value"])
    band_rows = tables.tables["table-satisfaction-band"]
    assert [(r[0], r[1]) for r in band_rows] == [("< 1 min", "3"), (">= 1 day", "1")]
    assert band_rows[0][2].startswith("4.67 (")  # mean and its interval
    assert [r[0] for r in tables.tables["table-satisfaction-updates"]] == ["1"]
    channels = {(r[0], r[1]): r[2] for r in tables.tables["table-channels"]}
    assert channels == {(c["milestone"], c["channel"]): f"{c['sent']:,}"
                        for c in ins["channel_preference"]["channels"]}
    assert ("return_completed", "email") in channels
    assert [r[0] for r in tables.tables["table-recommendations"]] == [
        r["milestone"] for r in ins["channel_preference"]["recommendations"]]
    split = tables.tables["table-time-split"]
    assert split[0][:3] == ["all", "all", f"{ins['time_split'][0]['n']:,}"]
    assert len(split) == len(ins["time_split"])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
                    " so the report cannot be rendered in a real browser here")
def test_report_renders_in_headless_chromium(
    svc: Any, report_file: tuple[Path, str, dict[str, Any]], tmp_path: Path,
) -> None:
    # given
    from return_notify.reporting.html import COLORS

    path, _, _ = report_file
    assert CHROMIUM is not None
    source = Charts()
    source.feed(path.read_text())
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--hide-scrollbars", "--force-color-profile=srgb",
             f"--user-data-dir={tmp_path / 'profile'}"]
    # when: the browser lays the page out and runs its measuring script, then paints it
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=90)
    shot = tmp_path / "report.png"
    # (at half scale: the page is laid out 900 px wide, the image is 450 px, quick to decode)
    painted = subprocess.run([*flags, "--window-size=900,2000", "--force-device-scale-factor=0.5",
                              f"--screenshot={shot}", path.as_uri()],
                             capture_output=True, text=True, timeout=90)
    # then: the browser laid out every mark of every chart at a real size
    assert dom.returncode == 0, dom.stderr[-2000:]
    marker = 'data-rendered="'
    assert marker in dom.stdout, dom.stderr[-2000:]
    raw = dom.stdout.split(marker, 1)[1].split('"', 1)[0].replace("&quot;", '"')
    rendered = json.loads(raw)
    assert set(rendered) == {"throughput", "latency", "success", "funnel", "load",
                             "satisfaction"}
    for chart, r in rendered.items():
        assert r["marks"] > 0 and r["width"] > 300 and r["height"] > 40, (chart, r)
    assert rendered["satisfaction"]["marks"] == len(source.charts["satisfaction"]) == 2
    # the insight tables: every row laid out at a real size
    marker = 'data-rendered-tables="'
    raw = dom.stdout.split(marker, 1)[1].split('"', 1)[0].replace("&quot;", '"')
    laid_out = json.loads(raw)
    parsed_tables = Tables()
    parsed_tables.feed(path.read_text())
    assert set(laid_out) == set(INSIGHT_TABLES)
    for table_id, r in laid_out.items():
        assert r["rows"] == len(parsed_tables.tables[table_id]) > 0, (table_id, r)
        assert r["width"] > 300 and r["height"] > 20 * r["rows"], (table_id, r)
    # bars with a value have an area: each is drawn (zero-width ones may be skipped)
    for chart in ("success", "funnel"):
        drawn = sum(1 for m in source.charts[chart] if float(m["data-value"]) > 0)
        assert rendered[chart]["marks"] >= drawn > 0, (chart, rendered[chart])
    # and painted: the screenshot has each bar chart's colour over a real area
    assert painted.returncode == 0 and shot.exists(), painted.stderr[-2000:]
    width, height, pixels = _png_rgb(shot.read_bytes())
    assert (width, height) == (450, 1000)
    counts: dict[bytes, int] = {}
    for px in pixels:
        counts[px] = counts.get(px, 0) + 1
    for name in ("ok", "funnel", "load", "bar"):
        rgb = bytes.fromhex(COLORS[name].lstrip("#"))
        assert counts.get(rgb, 0) > 300, (name, COLORS[name], counts.get(rgb, 0))
    assert len(counts) > 40  # text, axes, bars and lines: not a blank page


def _png_rgb(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB triples of an 8-bit, non-interlaced RGB or RGBA PNG (what
    chromium writes), scanline filters undone: enough to tell which colours were painted."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, color_type, interlace = header[8], header[9], header[12]
    assert depth == 8 and color_type in (2, 6) and interlace == 0, header
    bpp = 3 if color_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    prev, pixels = bytearray(stride), []
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        pixels.extend(bytes(line[x:x + 3]) for x in range(0, stride, bpp))
        prev = line
    return width, height, pixels
