"""JSON logs with bound ids, masking of recipients, and the Celery signal wiring."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from return_notify.observability.logs import (
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


def test_scrub_masks_percent_encoded_recipients_in_urls() -> None:
    line = '10.0.0.1:5 - "GET /v1/x?email=ana.lopez%40example.com&to=%2B14155550123 HTTP/1.1" 200'
    assert scrub(line) == ('10.0.0.1:5 - "GET /v1/x?email=a***%40example.com&to=%2B1******0123 '
                           'HTTP/1.1" 200')
    assert scrub("progress 100%25 of %2B5") == "progress 100%25 of %2B5"


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
    # given: a logger as Celery set it up, the signals the worker app connects, and
    # RSN_LOG_JSON=true
    from celery.signals import after_setup_logger

    from return_notify.config.settings import reset_settings
    from return_notify.workers.signals import connect

    connect()

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


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger and the SDK loggers back as they were."""
    from return_notify.observability.logs import SDK_LOGGERS

    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {n: logging.getLogger(n).level for n in (*SDK_LOGGERS, "uvicorn", "uvicorn.access")})
    try:
        yield
    finally:
        root.handlers, root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def test_setup_logging_drops_the_twilio_sdks_request_lines(
    restore_logging: None, capsys: pytest.CaptureFixture[str],
) -> None:
    # given: the API/CLI logging, at DEBUG even
    from return_notify.observability.logs import setup_logging

    setup_logging("DEBUG", json_logs=True)
    # when: the SDK logs a request as it does for every call (headers at INFO)
    sdk = logging.getLogger("twilio.http_client")
    sdk.info("Headers:")
    sdk.info("User-Agent : twilio-python/9 (Linux x86_64) Python/3.11")
    logging.getLogger("python_http_client.client").debug("HEADERS: {'Authorization': 'Bearer SG.x'}")
    sdk.warning("twilio answered 503")
    logging.getLogger("return_notify.test").debug("ours")
    # then: its warnings still show, its request details do not
    out = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [o["message"] for o in out] == ["twilio answered 503", "ours"]


def test_celery_logging_signal_quiets_the_sdk_loggers_too(restore_logging: None) -> None:
    from celery.signals import after_setup_logger

    logging.getLogger("twilio.http_client").setLevel(logging.NOTSET)
    logger = logging.getLogger("rsn.test.celery-sdk")
    logger.handlers, logger.propagate = [logging.StreamHandler(io.StringIO())], False
    try:
        after_setup_logger.send(sender=None, logger=logger, loglevel=logging.DEBUG, logfile=None,
                                format="%(message)s", colorize=False)
    finally:
        logger.handlers = []
    assert not logging.getLogger("twilio.http_client").isEnabledFor(logging.INFO)


def test_uvicorn_log_config_writes_its_lines_as_json_with_the_ids(
    restore_logging: None, capsys: pytest.CaptureFixture[str],
) -> None:
    # given: the config `return-notify api` hands uvicorn (applied in every server process)
    import logging.config

    from return_notify.observability.logs import uvicorn_log_config

    logging.config.dictConfig(uvicorn_log_config("info", json_logs=True))
    # when
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET",
                                             "/v1/returns/RMA-1", "1.1", 200)
    with log_context(event_id="wms-9"):
        logging.getLogger("return_notify.api.events").warning("publish to %s failed",
                                                              "ana@example.com")
    logging.getLogger("twilio.http_client").info("-- BEGIN Twilio API Request --")
    # then
    out = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(o["logger"], o["event_id"]) for o in out] == [
        ("uvicorn.access", None), ("return_notify.api.events", "wms-9")]
    assert out[0]["message"] == '10.0.0.1:5000 - "GET /v1/returns/RMA-1 HTTP/1.1" 200'
    assert out[1]["message"] == "publish to a***@example.com failed"


def test_a_tasks_ids_are_bound_from_prerun_to_postrun(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    # given: ids read from a task's arguments, as the deliver task registers them
    from celery.signals import task_postrun, task_prerun

    from return_notify.observability.logs import bind_task_ids, ids_or_list

    logger, stream = json_log
    bind_task_ids("rsn.test.task", lambda args, kw: {"channel": args[0],
                                                     **ids_or_list("delivery_id", args[1])})
    task = type("Task", (), {"name": "rsn.test.task"})()
    # when: Celery runs it (prerun, the body and its own "succeeded" line, postrun)
    for ids in ([7], [8, 9]):
        task_prerun.send(sender=task, task_id=f"t{ids[0]}", task=task, args=("sms", ids),
                         kwargs={})
        logger.info("in the task")
        task_postrun.send(sender=task, task_id=f"t{ids[0]}", task=task, args=("sms", ids),
                          kwargs={}, retval=None, state="SUCCESS")
        logger.info("after it")
    # then
    out = lines(stream)
    assert [(o["delivery_id"], o.get("delivery_ids"), o.get("channel")) for o in out] == [
        (7, None, "sms"), (None, None, None), (None, [8, 9], "sms"), (None, None, None)]
    assert current_context() == {}


@pytest.mark.parametrize(("line", "secret"), [
    ('127.0.0.1:5 - "GET /v1/inbox/stream?token=i1.eyJ0IjoiYWNtZSJ9.c2lnbmF0dXJlMTIz HTTP/1.1" 200',
     "i1.eyJ0IjoiYWNtZSJ9"),
    ('127.0.0.1:5 - "POST /v1/carriers/shippo?tenant=acme&token=shippo-secret-42 HTTP/1.1" 202',
     "shippo-secret-42"),
    ('127.0.0.1:5 - "GET /v1/unsubscribe/u1.QUJDREVGR0hJSktMTU5PUA HTTP/1.1" 200',
     "u1.QUJDREVGR0hJSktMTU5PUA"),
    ("Authorization: Bearer rsnp_0123456789ab_00112233445566778899aabbccddeeff0011",
     "00112233445566778899"),
    ("leaked rsn_0123456789ab_00112233445566778899aabbccddeeff00112233 in a message",
     "rsn_0123456789ab"),
])
def test_tokens_and_secrets_are_redacted(line: str, secret: str) -> None:
    from return_notify.observability.logs import REDACTED, scrub

    clean = scrub(line)
    assert secret not in clean and REDACTED in clean


def test_plain_text_tracebacks_are_scrubbed() -> None:
    # given a plain-text handler (the default) and an error whose text holds personal data
    stream = io.StringIO()
    logger = logging.getLogger("rsn.test.traceback")
    logger.handlers, logger.propagate = [logging.StreamHandler(stream)], False
    configure_handlers(logger, json_logs=False)
    try:
        raise ValueError("(psycopg2.errors.X) DETAIL: ana@example.com, +14155550123, "
                         "https://x.example/cb?token=abc123secret")
    except ValueError:
        logger.exception("poison event")
    logger.handlers = []
    # then the traceback is masked and redacted like the message
    out = stream.getvalue()
    assert "Traceback" in out and "a***@example.com" in out
    assert "ana@example.com" not in out and "+14155550123" not in out
    assert "abc123secret" not in out
