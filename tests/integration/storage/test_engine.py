"""A database error never brings a statement's values into the logs: the engine hides
SQLAlchemy's copy of the parameters (``hide_parameters``), and the log filter hides the
database's own error text, which quotes the offending value."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

pytestmark = pytest.mark.integration

VALUE = "Bob ana@example.com +14155550123"


def test_a_failing_statement_does_not_log_its_values(svc: Any) -> None:
    from return_notify.observability.logs import DATABASE_ERROR_HIDDEN, configure_handlers
    from return_notify.storage.db import session_scope

    # given a statement that fails on a value holding a name, an address and a number
    with pytest.raises(DBAPIError) as info, session_scope() as s:
        s.execute(text("SELECT CAST(:v AS int)"), {"v": VALUE})
    assert "hidden due to hide_parameters" in str(info.value)  # SQLAlchemy's copy
    # when it is logged with its traceback, as the API and the workers log errors
    stream = io.StringIO()
    logger = logging.getLogger("rsn.test.sql")
    logger.handlers, logger.propagate = [logging.StreamHandler(stream)], False
    configure_handlers(logger, json_logs=False)
    try:
        raise info.value
    except DBAPIError:
        logger.exception("POST /v1/events failed")
    logger.handlers = []
    # then none of it is in the log line
    out = stream.getvalue()
    assert "Traceback" in out and DATABASE_ERROR_HIDDEN in out
    assert "ana@example.com" not in out and "+14155550123" not in out and "Bob" not in out
