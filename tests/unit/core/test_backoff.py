"""The one backoff: exponential, full jitter, capped, and a provider's Retry-After honoured."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from return_notify.core.backoff import backoff_s


@given(attempt=st.integers(1, 40), base=st.floats(0.01, 10), cap=st.floats(1, 3600),
       retry_after=st.none() | st.floats(0, 10_000))
def test_backoff_is_capped_jittered_and_honours_retry_after(
    attempt: int, base: float, cap: float, retry_after: float | None
) -> None:
    wait = backoff_s(attempt, base, cap, retry_after, rng=random.Random(attempt))
    assert 0 <= wait <= cap
    if retry_after is not None:
        assert wait >= min(retry_after, cap)


def test_backoff_grows_exponentially_on_average() -> None:
    rng = random.Random(1)
    means = [sum(backoff_s(a, 1, 10_000, rng=rng) for _ in range(400)) / 400 for a in (1, 4, 7)]
    assert means[0] < means[1] < means[2]
    assert 20 < means[2] < 44  # full jitter: mean is half of 2^(7-1)
