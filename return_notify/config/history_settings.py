"""The settings of a year of history and of the insights: monthly partitions, retention,
the archive, the KPI aggregates, tracked links and the satisfaction survey.

Declared apart from ``settings.Settings`` (their subclass, the one settings object every
process reads) so that file stays readable; the ``RSN_`` prefix, the ``.env`` file and the
cache are ``Settings``'. Sections are marked ``# --- name ---`` like there, for the settings
reference (``python -m return_notify.devtools.reference_docs``).
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from return_notify.config.api_settings import ApiSettings


class HistorySettings(ApiSettings):
    """The history and insights sections of ``Settings``."""

    # --- history: monthly partitions, retention, archive, KPI aggregates -----------------
    history_months: int = Field(
        default=0, ge=0, le=1200,
        description="drop the monthly partitions of events, deliveries, delivery attempts and "
        "rejected events once a whole month is older than this many months (the current "
        "month and this many before it are kept); 0: keep every month",
    )
    archive_dir: str | None = Field(
        default=None,
        description="before a month is dropped, detach it and export it here: one directory "
        "per month with a gzip CSV per table and manifest.json (see the operating guide); "
        "unset: drop without export",
    )
    partitions_ahead: int = Field(
        default=3, ge=1, le=24,
        description="months of partitions the daily maintenance task keeps created ahead "
        "(rows of a month without a partition land in the default partition)",
    )
    stats_rollup_interval_s: float = Field(
        default=60.0, ge=5,
        description="beat rolls the KPI aggregates up this often (a change to an hour "
        "already rolled up reaches the long-window KPIs within this time)",
    )
    stats_hourly_days: int = Field(
        default=35, ge=2, le=3660,
        description="hourly KPI aggregates are kept this many days (daily ones "
        "RSN_STATS_DAILY_MONTHS, monthly ones for good); a `since` older than that is "
        "resolved to the day with raw rows",
    )
    stats_daily_months: int = Field(
        default=13, ge=0, le=1200,
        description="daily KPI aggregates are kept for this many whole months before the "
        "current one (monthly ones for good); a `since` older than that is resolved to the "
        "month with raw rows; 0: keep them for good",
    )
    stats_exact_window_s: float = Field(
        default=6 * 3600.0, ge=0,
        description="KPIs of a window shorter than this (`since` within it) are computed "
        "from the raw rows, exact percentiles included; longer windows read the aggregates",
    )

    # --- insights: tracked links and the satisfaction survey ----------------------------
    link_secret: SecretStr | None = Field(
        default=None,
        description="Key sealing the status page (/s/...), click-tracking (/r/...) and rating "
        "(/rate/...) links; unset: no message carries a tracked or rating link, whatever a "
        "tenant's switches say, and the status link (/r/{tenant}/{return_id}) shows no status",
    )
    rating_change_window_h: float = Field(
        default=168.0, ge=0,
        description="hours after a customer's first rating during which a rating link may "
        "change the score (the same score again is always a no-op)",
    )
    stats_insight_notifications: int = Field(
        default=20_000, ge=0,
        description="`stats` and GET /v1/stats compute channel preference and the time split "
        "over at most this many of the window's notifications sent, the latest (a bounded "
        "read on any history); 0: all of them, exact but as slow as the window is long",
    )
    stats_insight_ratings: int = Field(
        default=2_000, ge=0,
        description="`stats` and GET /v1/stats compute effectiveness over at most this many "
        "of the window's satisfaction ratings, the latest; 0: all of them",
    )
