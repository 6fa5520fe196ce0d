"""Customer preferences, quiet hours and throttles: ``preferences get|set|clear``,
``quiet-hours get|set`` and ``throttle get|set`` (``set --clear`` removes a config).

``register(app)`` adds the three groups; the database is touched only when a command runs.
The command line holds the database credentials, so it acts as the tenant's owner; its
quiet-hours and throttle changes are audited as ``audit_actor()`` names it (``policy_store``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from return_notify.cli.common import (
    LIST_TENANTS_HINT,
    JsonOpt,
    audit_actor,
    console,
    fail,
    print_json,
    require_database,
    tenant_id,
)

preferences_app = typer.Typer(help="Customer notification preferences.", no_args_is_help=True)
quiet_app = typer.Typer(help="Quiet hours per tenant and region (recipient's local time).",
                        no_args_is_help=True)
throttle_app = typer.Typer(help="Minimum intervals between messages and digest windows.",
                           no_args_is_help=True)

TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant slug.")]


def register(app: typer.Typer) -> None:
    """Add ``preferences``, ``quiet-hours`` and ``throttle`` to the ``return-notify`` app."""
    app.add_typer(preferences_app, name="preferences")
    app.add_typer(quiet_app, name="quiet-hours")
    app.add_typer(throttle_app, name="throttle")


def _out(data: Any, json_out: bool) -> None:
    if json_out:
        print_json(data)
    else:
        console.print_json(json.dumps(data, indent=2, default=str))


def _tenant_id(slug: str) -> int:
    from return_notify.storage.db import session_scope

    require_database()
    with session_scope() as s:
        return tenant_id(s, slug, LIST_TENANTS_HINT)


def _region_key(region: str) -> str:
    from return_notify.policy.store import region_key

    try:
        return region_key(region)
    except ValueError as exc:
        fail(f"--region: {exc}")


def _switches(values: list[str], what: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or val.lower() not in ("on", "off", "true", "false", "yes", "no"):
            fail(f"{what} {item!r}: use KEY=on or KEY=off")
        out[key.strip()] = val.lower() in ("on", "true", "yes")
    return out


def _load_json(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    raw = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    data = json.loads(raw)
    if not isinstance(data, dict):
        fail("the JSON file must hold an object")
    return data


# ------------------------------------------------------------------ preferences ---------

@preferences_app.command("get")
def preferences_get(customer: Annotated[str, typer.Argument(help="Customer id.")],
                    tenant: TenantOpt, json_out: JsonOpt = False) -> None:
    """Show a customer's stored preferences."""
    from return_notify.policy.preferences import get_preferences
    from return_notify.storage.db import session_scope

    tid = _tenant_id(tenant)
    with session_scope() as s:
        prefs = get_preferences(s, tid, customer)
    _out({"customer_id": customer, "stored": prefs is not None,
          "preferences": prefs.as_json() if prefs else {}}, json_out)


@preferences_app.command("set")
def preferences_set(
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    tenant: TenantOpt,
    channel: Annotated[list[str], typer.Option(help="CHANNEL=on|off, e.g. sms=off.")] = [],  # noqa: B006
    milestone: Annotated[list[str], typer.Option(
        help="MILESTONE:CHANNEL=on|off, e.g. in_transit:sms=off.")] = [],  # noqa: B006
    preferred: Annotated[str | None, typer.Option(help="email, sms or inapp; 'none' clears.")] = None,
    locale: Annotated[str | None, typer.Option(help="BCP 47, e.g. de-AT; 'none' clears.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone; 'none' clears.")] = None,
    tracking: Annotated[str | None, typer.Option(
        help="off: record no opens or clicks of this customer; on; 'none' clears.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Replace with this JSON ('-': stdin).")]
    = None,
    json_out: JsonOpt = False,
) -> None:
    """Change a customer's preferences: options are merged into what is stored; --file
    replaces the document (then options apply on top)."""
    from pydantic import ValidationError

    from return_notify.policy.preferences import Preferences, get_preferences, put_preferences
    from return_notify.storage.db import session_scope

    tid = _tenant_id(tenant)
    with session_scope() as s:
        current = get_preferences(s, tid, customer)
        doc = _load_json(file) if file is not None else (current.as_json() if current else {})
        doc.setdefault("channels", {}).update(_switches(channel, "--channel"))
        for key, on in _switches(milestone, "--milestone").items():
            m, sep, ch = key.partition(":")
            if not sep:
                fail(f"--milestone {key!r}: use MILESTONE:CHANNEL=on|off")
            doc.setdefault("milestones", {}).setdefault(m, {})[ch] = on
        for name, value in (("preferred_channel", preferred), ("locale", locale),
                            ("timezone", timezone)):
            if value is not None:
                doc[name] = None if value.lower() == "none" else value
        if tracking is not None:
            if tracking.lower() not in ("on", "off", "none"):
                fail(f"--tracking {tracking!r}: use on, off or none")
            doc["tracking"] = None if tracking.lower() == "none" else tracking.lower() == "on"
        try:
            prefs = Preferences.model_validate(doc)
        except ValidationError as exc:
            fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        put_preferences(s, tid, customer, prefs)
    _out({"customer_id": customer, "stored": True, "preferences": prefs.as_json()}, json_out)


@preferences_app.command("clear")
def preferences_clear(customer: Annotated[str, typer.Argument(help="Customer id.")],
                      tenant: TenantOpt, json_out: JsonOpt = False) -> None:
    """Forget a customer's preferences (event defaults and rules apply again)."""
    from return_notify.policy.preferences import delete_preferences
    from return_notify.storage.db import session_scope

    tid = _tenant_id(tenant)
    with session_scope() as s:
        removed = delete_preferences(s, tid, customer)
    _out({"customer_id": customer, "removed": removed}, json_out)


# ------------------------------------------------------------------ quiet hours ---------

@quiet_app.command("get")
def quiet_get(tenant: TenantOpt,
              region: Annotated[str | None, typer.Option(help="Show what applies here.")] = None,
              json_out: JsonOpt = False) -> None:
    """The tenant's quiet-hours configs, and with --region what applies in that region."""
    from return_notify.config.settings import get_settings
    from return_notify.policy.planner import get_quiet_hours
    from return_notify.policy.views import effective_view
    from return_notify.storage.db import session_scope

    tid = _tenant_id(tenant)
    with session_scope() as s:
        configs = get_quiet_hours(s, tid)
    data: dict[str, Any] = {"configs": {k: v.model_dump(mode="json") for k, v in configs.items()}}
    if region:
        data["effective"] = effective_view(configs, region, get_settings())
    _out(data, json_out)


@quiet_app.command("set")
def quiet_set(
    tenant: TenantOpt,
    region: Annotated[str, typer.Option(help="Region, e.g. US-FL; 'default' = every other.")]
    = "default",
    allowed: Annotated[str | None, typer.Option(help="Allowed window, e.g. 08:00-21:00.")] = None,
    day: Annotated[list[str], typer.Option(
        help="Per weekday, e.g. sun=12:00-21:00 or sat=closed.")] = [],  # noqa: B006
    channels: Annotated[str | None, typer.Option(help="Held channels, e.g. sms,inapp.")] = None,
    exempt: Annotated[str | None, typer.Option(help="Milestones sent at any hour.")] = None,
    default_timezone: Annotated[str | None, typer.Option(help="When the zone is unknown.")] = None,
    enforce_legal: Annotated[bool, typer.Option(help="Keep US state legal floors.")] = True,
    off: Annotated[bool, typer.Option("--off", help="No quiet hours in this region.")] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove this region's config.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Set (replace) the quiet hours of one region of a tenant."""
    from pydantic import ValidationError

    from return_notify.config.settings import get_settings
    from return_notify.policy.planner import get_quiet_hours
    from return_notify.policy.quiet_hours import QuietHoursConfig
    from return_notify.policy.store import remove_quiet_hours, scope_region, set_quiet_hours
    from return_notify.policy.views import effective_view
    from return_notify.storage.db import session_scope

    tid = _tenant_id(tenant)
    key = _region_key(region)
    doc: dict[str, Any] = {"enforce_legal": enforce_legal, "enabled": not off}
    if allowed:
        doc["allowed"] = allowed
    days: dict[str, str | None] = {}
    for item in day:
        name, sep, span = item.partition("=")
        if not sep:
            fail(f"--day {item!r}: use DAY=HH:MM-HH:MM or DAY=closed")
        days[name] = None if span.lower() == "closed" else span
    doc["days"] = days
    if channels is not None:
        doc["channels"] = [c.strip() for c in channels.split(",") if c.strip()]
    if exempt is not None:
        doc["exempt_milestones"] = [m.strip() for m in exempt.split(",") if m.strip()]
    if default_timezone:
        doc["default_timezone"] = default_timezone
    with session_scope() as s:
        if clear:
            remove_quiet_hours(s, tid, key, audit_actor())
        else:
            try:
                cfg = QuietHoursConfig.model_validate(doc)
            except ValidationError as exc:
                fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
            set_quiet_hours(s, tid, key, cfg, audit_actor())
        configs = get_quiet_hours(s, tid)
    _out(effective_view(configs, scope_region(key), get_settings()), json_out)


# ------------------------------------------------------------------ throttle ------------

@throttle_app.command("get")
def throttle_get(tenant: TenantOpt, json_out: JsonOpt = False) -> None:
    """The tenant's overrides and the intervals and digest windows in effect."""
    from return_notify.config.settings import get_settings
    from return_notify.policy.views import throttle_view
    from return_notify.storage.db import session_scope

    tid = _tenant_id(tenant)
    with session_scope() as s:
        view = throttle_view(s, tid, get_settings())
    _out({k: (v.model_dump(mode="json") if v is not None else None) for k, v in view.items()},
         json_out)


@throttle_app.command("set")
def throttle_set(
    tenant: TenantOpt,
    interval: Annotated[list[str], typer.Option(
        help="MILESTONE:CHANNEL=DURATION (or *:CHANNEL), e.g. in_transit:sms=6h.")] = [],  # noqa: B006
    digest: Annotated[list[str], typer.Option(help="CHANNEL=DURATION, e.g. email=2m.")] = [],  # noqa: B006
    clear: Annotated[bool, typer.Option("--clear", help="Remove the tenant's overrides.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Merge intervals and digest windows into the tenant's overrides (0 switches one off)."""
    from pydantic import ValidationError

    from return_notify.policy.planner import get_throttle
    from return_notify.policy.store import set_throttle
    from return_notify.policy.throttle import ThrottleConfig, parse_pairs
    from return_notify.storage.db import session_scope

    tid = _tenant_id(tenant)
    with session_scope() as s:
        if clear:
            set_throttle(s, tid, None, audit_actor())
        else:
            own = get_throttle(s, tid) or ThrottleConfig()
            try:
                cfg = ThrottleConfig.model_validate({
                    "min_interval_s": {**own.min_interval_s, **parse_pairs(",".join(interval))},
                    "digest_window_s": {**own.digest_window_s, **parse_pairs(",".join(digest))}})
            except ValueError as exc:  # ValidationError is a ValueError
                msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                fail(msg)
            set_throttle(s, tid, cfg, audit_actor())
    throttle_get(tenant, json_out)
