"""JSON logs with bound ids, masking of recipients, and the Celery signal wiring."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from return_notify.logging_setup import (
    ContextFilter,
    JsonFormatter,
    configure_handlers,
    current_context,
    log_context,
    scrub,
)


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("rsn.test.json")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers = []


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_json_line_carries_the_bound_ids(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    # given
    logger, stream = json_log
    # when
    logger.info("outside")
    with log_context(event_id="wms-1", tenant="acme"):
        logger.info("ingesting %d", 3)
        with log_context(delivery_id=42):
            logger.warning("sending")
        logger.info("after")
    # then
    out = lines(stream)
    assert [(o["event_id"], o["delivery_id"]) for o in out] == [
        (None, None), ("wms-1", None), ("wms-1", 42), ("wms-1", None)]
    assert out[1]["message"] == "ingesting 3" and out[1]["tenant"] == "acme"
    assert out[2]["level"] == "WARNING" and out[2]["logger"] == "rsn.test.json"
    assert current_context() == {}


def test_recipients_are_masked_in_messages_context_and_tracebacks(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    with log_context(delivery_id=7, recipient="ana.lopez@example.com"):
        logger.info("to %s and %s", "ana.lopez@example.com", "+14155550123")
        try:
            raise ValueError("bad address bob@shop.example")
        except ValueError:
            logger.exception("failed")
    raw = stream.getvalue()
    assert "ana.lopez@example.com" not in raw and "bob@shop.example" not in raw
    assert "+14155550123" not in raw
    out = lines(stream)
    assert out[0]["message"] == "to a***@example.com and +1******0123"
    assert out[0]["recipient"] == "a***@example.com"
    assert "b***@shop.example" in str(out[1]["exc_info"])


def test_scrub_leaves_ordinary_text_alone() -> None:
    assert scrub("delivery 12 sent in 3 ms (+5 retries)") == "delivery 12 sent in 3 ms (+5 retries)"
    assert scrub("https://x.example/track?id=RMA-1") == "https://x.example/track?id=RMA-1"


def test_context_is_per_thread() -> None:
    seen: list[dict[str, object]] = []
    with log_context(event_id="main"):
        t = threading.Thread(target=lambda: seen.append(current_context()))
        t.start()
        t.join()
    assert seen == [{}]


def test_celery_logging_signal_switches_handlers_to_json(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a logger as Celery set it up, and RSN_LOG_JSON=true
    from celery.signals import after_setup_logger

    from return_notify.config.settings import reset_settings

    monkeypatch.setenv("RSN_LOG_JSON", "true")
    reset_settings()
    stream = io.StringIO()
    logger = logging.getLogger("rsn.test.celery")
    logger.handlers, logger.propagate = [logging.StreamHandler(stream)], False
    try:
        # when
        after_setup_logger.send(sender=None, logger=logger, loglevel=logging.INFO, logfile=None,
                                format="%(message)s", colorize=False)
        logger.warning("hello %s", "ana@example.com")
    finally:
        reset_settings()
        logger.handlers = []
    # then
    line = json.loads(stream.getvalue())
    assert line["message"] == "hello a***@example.com" and "event_id" in line


def test_plain_text_logs_are_masked_too() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("rsn.test.plain")
    logger.handlers, logger.propagate = [logging.StreamHandler(stream)], False
    configure_handlers(logger, json_logs=False)
    logger.warning("to %s", "+447700900123")
    logger.handlers = []
    assert stream.getvalue().strip() == "to +4*******0123"
