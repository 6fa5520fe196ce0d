"""One backoff function for every retry: exponential, full jitter, capped."""

from __future__ import annotations

import random


def backoff_s(
    attempt: int,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` ≥ 1 tries already made).

    Full jitter (uniform in [0, min(cap, base·2^(attempt-1))]) spreads a burst of failures
    so retries do not arrive together; a provider's Retry-After is a floor, never ignored.
    """
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    wait = (rng or random).uniform(0.0, ceiling)
    if retry_after_s is not None:
        wait = max(wait, min(retry_after_s, cap_s))
    return wait
