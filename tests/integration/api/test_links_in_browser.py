"""The redirect and the rating page in a real browser (headless Chromium, as the HTML
report's test uses): a tapped tracked link lands on the notification's https page and counts
once; the rating page works with JavaScript switched off, its buttons are named for screen
readers and big enough to tap, and a mouse click changes the score."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from tests.integration.api_helpers import ApiEnv, env_override, make_tenant, uid
from tests.integration.browser_helpers import CHROMIUM, FLAGS, Browser

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                       "chromium) so the pages cannot be tested in a real browser here"),
]

SECRET = "link-secret-for-browser-tests"


@pytest.fixture(scope="module")
def app_url(api_env: ApiEnv) -> Iterator[str]:
    """The real app on uvicorn on a free port, its public URL pointing at itself."""
    from return_notify.api.app import create_app

    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=0,
                                        log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    try:
        with env_override(RSN_LINK_SECRET=SECRET, RSN_PUBLIC_BASE_URL=url):
            yield url
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def label_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A carrier's label page over https (a self-signed certificate for 127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))

    class Label(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            body = b"<!doctype html><title>Label</title><h1>Your return label is ready</h1>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Label)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def setup_return(milestone: str, data: dict[str, Any], **switches: Any) -> tuple[int, str]:
    from return_notify.access.audit import Actor
    from return_notify.pipeline.ingest import ingest_batch
    from return_notify.storage.db import session_scope
    from return_notify.templating.link_settings import InsightsSettings, save_insights
    from tests.helpers import event

    tid, slug, _ = make_tenant()
    with session_scope() as s:
        save_insights(s, tid, InsightsSettings(**switches), Actor(None, "test"))
    rid = uid("RMA-")
    with session_scope() as s:
        ingest_batch(s, [event(milestone, tenant=slug, return_id=rid, data=data)])
    return tid, rid


def token(tid: int, rid: str, milestone: str, kind: str, channel: str, lang: str) -> str:
    from return_notify.templating.links import LinkTarget, cached_link_key, seal

    return seal(LinkTarget(kind, tid, rid, milestone, channel, lang),  # type: ignore[arg-type]
                cached_link_key(SECRET))


def scalar(sql: str, **params: Any) -> Any:
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        return s.execute(text(sql), params).scalar()


def test_a_tapped_tracked_link_lands_on_the_label_and_counts_once(
    app_url: str, label_site: str, tmp_path: Path,
) -> None:
    # given a tracked SMS link of a label notification whose label is on an https site
    tid, rid = setup_return("label_created", {"label_url": f"{label_site}/RMA.pdf"},
                            tracking=True)
    link = f"{app_url}/r/{token(tid, rid, 'label_created', 'click', 'sms', 'en')}"
    # when a browser opens it, twice (as from the SMS app)
    pages = [subprocess.run(
        [CHROMIUM, *FLAGS, "--ignore-certificate-errors", f"--user-data-dir={tmp_path / str(i)}",
         "--virtual-time-budget=5000", "--dump-dom", link],
        capture_output=True, text=True, timeout=90) for i in range(2)]
    # then it shows the label page, and one click is recorded
    for page in pages:
        assert page.returncode == 0, page.stderr[-2000:]
        assert "Your return label is ready" in page.stdout
    assert scalar("SELECT count(*) FROM engagement_signals s JOIN returns r "
                  "ON r.id = s.return_pk WHERE r.return_id = :r AND s.kind = 'click'",
                  r=rid) == 1


def test_the_rating_page_works_without_javascript_for_mouse_and_screen_reader(
    app_url: str, tmp_path: Path,
) -> None:
    # given a French customer's rating link, in a browser with JavaScript switched off
    tid, rid = setup_return("return_completed", {}, survey=True)
    url = f"{app_url}/rate/{token(tid, rid, 'return_completed', 'rating', 'email', 'fr')}"
    browser = Browser(tmp_path / "profile")
    try:
        browser.page("Emulation.setScriptExecutionDisabled", {"value": True})
        # when they click "4" in the email
        browser.goto(url + "?score=4")
        # then the score is stored and the page thanks them, in French
        assert scalar("SELECT score FROM satisfaction_ratings s JOIN returns r "
                      "ON r.id = s.return_pk WHERE r.return_id = :r", r=rid) == 4
        body = browser.text()
        assert "Merci !" in body and "Votre note : 4 sur 5." in body
        # and a screen reader finds the question and five named buttons, 4 pressed
        tree = browser.accessibility()
        buttons = [n for n in tree if n["role"] == "button"]
        assert [b["name"] for b in buttons] == [
            "1 sur 5 – Pas du tout satisfait(e)", "2 sur 5", "3 sur 5", "4 sur 5",
            "5 sur 5 – Très satisfait(e)"]
        assert [b["pressed"] for b in buttons] == ["false", "false", "false", "true", "false"]
        assert any(n["role"] == "group" and "Choisissez une note" in (n["name"] or "")
                   for n in tree)
        # and each button is a comfortable target (WCAG 2.5.5: at least 44 × 44 px)
        for score in range(1, 6):
            _, _, w, h = browser.box(f'button[value="{score}"]')
            assert w >= 44 and h >= 44, (score, w, h)
        # when they change their mind with the mouse
        browser.click('button[value="2"]')
        # then the new score is stored and shown
        assert "Votre note : 2 sur 5." in browser.text()
        assert scalar("SELECT score || '/' || changes FROM satisfaction_ratings s JOIN returns r "
                      "ON r.id = s.return_pk WHERE r.return_id = :r", r=rid) == "2/1"
    finally:
        browser.close()
