"""Recipients masked for logs and pages: ``j***@example.com``, ``+1******4567``."""

from __future__ import annotations

import pytest

from return_notify.core.masking import mask


@pytest.mark.parametrize(("raw", "masked"), [
    ("jane@example.com", "j***@example.com"), ("+14155554567", "+1******4567"), (None, ""),
])
def test_mask(raw: str | None, masked: str) -> None:
    assert mask(raw) == masked
