"""Shared by the tenant-template tests (``test_overrides.py``, ``test_overrides_admin.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.storage.db import session_scope
from return_notify.templating.store import forget_tenant_templates
from tests.helpers import uid


def q(sql: str, **params: Any) -> list[Any]:
    with session_scope() as s:
        return list(s.execute(text(sql), params).all())


def new_tenant(name: str | None = None) -> tuple[int, str]:
    from return_notify.access.tenant_keys import create_tenant

    slug = uid("t-")
    with session_scope() as s:
        tid, _ = create_tenant(s, slug, name)
    return tid, slug


@pytest.fixture(autouse=True)
def fresh_template_cache(svc: Any) -> Iterator[None]:
    forget_tenant_templates()
    yield
    forget_tenant_templates()
