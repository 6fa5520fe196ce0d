"""The template sandbox process: whatever runs in it, the kernel stops it at its CPU,
memory and wall-clock limits, and the caller gets a render error saying which (previews and
validations from the API run there)."""

from __future__ import annotations

import threading
import time

import pytest

from return_notify.templating.errors import TemplateRenderError
from return_notify.templating.isolation import ProcessLimits, SandboxBusy, run_isolated

LIMITS = ProcessLimits(cpu_s=1, memory_mb=64, wall_s=4, concurrency=2)


# --- what the children run (module-level: pickled by name) -----------------------------
def burn_cpu() -> None:
    x = 0
    while True:
        x += 1


def take_memory(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def fail_to_render() -> None:
    raise TemplateRenderError("override sms/x.text [en]", "undefined variable: 'nope'")


def double(value: int) -> int:
    return value * 2


# --- tests -------------------------------------------------------------------------------
def test_a_result_comes_back() -> None:
    assert run_isolated(double, 21, process_limits=LIMITS) == 42


def test_cpu_is_capped() -> None:
    started = time.monotonic()
    with pytest.raises(TemplateRenderError, match="more than 1 s of CPU"):
        run_isolated(burn_cpu, process_limits=LIMITS)
    assert time.monotonic() - started < LIMITS.wall_s


def test_memory_is_capped() -> None:
    with pytest.raises(TemplateRenderError, match="more than 64 MB of memory"):
        run_isolated(take_memory, 512, process_limits=LIMITS)
    assert run_isolated(take_memory, 8, process_limits=LIMITS) == 8 * 1024 * 1024


def test_wall_clock_is_capped() -> None:
    with pytest.raises(TemplateRenderError, match="took longer than 1.5 s"):
        run_isolated(sleep_for, 30, process_limits=ProcessLimits(wall_s=1.5))


def test_a_render_error_keeps_its_template_and_reason() -> None:
    with pytest.raises(TemplateRenderError) as info:
        run_isolated(fail_to_render, process_limits=LIMITS)
    assert info.value.template == "override sms/x.text [en]"
    assert info.value.reason == "undefined variable: 'nope'"


def test_callers_beyond_the_slots_wait_then_get_busy() -> None:
    one_slot = ProcessLimits(wall_s=1.0, concurrency=1)
    holder = threading.Thread(target=run_isolated, args=(sleep_for, 0.8),
                              kwargs={"process_limits": ProcessLimits(wall_s=5, concurrency=1)})
    holder.start()
    time.sleep(0.2)
    try:
        with pytest.raises(SandboxBusy):
            run_isolated(double, 1, process_limits=ProcessLimits(wall_s=0.1, concurrency=1))
    finally:
        holder.join()
    assert run_isolated(double, 2, process_limits=one_slot) == 4


def test_preview_and_validation_run_there_as_they_would_here() -> None:
    from return_notify.pipeline.preview import (
        PreviewTenant,
        preview,
        preview_isolated,
        validate_isolated,
    )
    from return_notify.templating.sandbox import RenderLimits
    from return_notify.templating.validation import OverrideKey

    tenant = PreviewTenant("acme")
    drafts = {"text": "Hi {{ return_id }} {{ cta_url }}"}
    here = preview(tenant, "sms", "refund_processed", "en", drafts)
    there = preview_isolated(tenant, "sms", "refund_processed", "en", drafts,
                             public_base_url="https://returns.example.com")
    assert there == here
    key = OverrideKey("sms", "*", "text", "en")
    assert validate_isolated(key, "{{ return_id }} {{ cta_url }}", None, "acme",
                             RenderLimits()).ok
    assert not validate_isolated(key, "{{ return_id }}", None, "acme", RenderLimits()).ok


def test_validation_of_every_milestone_stops_at_its_total_budget() -> None:
    # a template within the per-render limits is rendered 26 times for '*': the samples
    # together may take RSN_TEMPLATE_VALIDATION_BUDGET_MS (here 50 ms; each takes more)
    from return_notify.templating.sandbox import RenderLimits
    from return_notify.templating.validation import OverrideKey, validate_override

    slow = ("{% for i in range(3000) %}{% for j in range(60) %}{% endfor %}{% endfor %}"
            "{{ return_id }} {{ cta_url }}")
    key = OverrideKey("sms", "*", "text", "en")
    checked = validate_override(key, slow, None, "acme", RenderLimits(timeout_s=30), total_s=0.05)
    assert not checked.ok and "too slow" in checked.problems[-1], checked.problems
    assert validate_override(key, slow, None, "acme", RenderLimits(timeout_s=30)).ok
