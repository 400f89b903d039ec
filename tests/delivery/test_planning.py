"""Send planning: strategy per tier and audience, calls, ETA, SMS saving."""

from __future__ import annotations

import pytest

from delivery import planning
from delivery.planning import Strategy, estimate


def test_closed_loop_is_always_sent_in_tracked_batches_of_100() -> None:
    result = estimate(
        tier="closed_loop", recipients=1_050, languages=2, tracked=False, org_wide_possible=True
    )
    assert result.strategy == Strategy.USER_BATCHES
    assert result.tracked
    assert result.send_calls == 12  # 11 full-or-part batches plus one part-full per extra language
    assert result.receipt_calls == 12 * 7


def test_an_untracked_citywide_broadcast_uses_to_all_user_while_the_day_allows() -> None:
    result = estimate(tier="citywide", recipients=1_000_000, tracked=False, org_wide_possible=True)
    assert result.strategy == Strategy.ORG_WIDE
    assert result.send_calls == 1
    assert result.messages == 1
    spent = estimate(
        tier="citywide",
        recipients=1_000,
        tracked=False,
        org_wide_possible=True,
        org_wide_used_today=3,
    )
    assert spent.strategy == Strategy.USER_BATCHES
    assert any("three organisation-wide" in w for w in spent.warnings)


def test_department_wide_when_the_audience_maps_onto_departments() -> None:
    result = estimate(tier="targeted", recipients=40_000, tracked=False, dept_count=25)
    assert result.strategy == Strategy.DEPT_WIDE
    assert result.send_calls == 2  # 20 departments per call


def test_eta_follows_5000_recipients_a_minute_and_sms_saving() -> None:
    result = estimate(tier="targeted", recipients=1_000_000)
    assert result.eta_s == pytest.approx(200 * 60)
    assert result.eta_minutes == 200.0
    assert result.sms_cost_hkd == 250_000.0
    assert result.push_cost_hkd == 30_000.0
    assert result.sms_saving_hkd == 220_000.0
    assert estimate(tier="targeted", recipients=4_000).eta_s == 0.0


def test_a_send_that_does_not_fit_the_month_warns() -> None:
    result = estimate(tier="targeted", recipients=10_000, calls_left=500)
    assert any("only 500 are left" in w for w in result.warnings)
    assert result.as_dict()["calls"] == result.send_calls + result.receipt_calls


def test_a_file_or_voice_notice_counts_its_companion_cards_and_upload() -> None:
    plain = estimate(tier="targeted", recipients=4_950, languages=1)
    media = estimate(
        tier="targeted", recipients=4_950, languages=1, companion=True, media_uploads=1
    )
    assert media.send_calls == 2 * plain.send_calls == 100
    assert media.receipt_calls == 2 * plain.receipt_calls
    assert media.calls == media.send_calls + media.receipt_calls + 1
    # The month's last 799 calls hold the plain notice (50 sends, 350 polls), not the file.
    assert not estimate(tier="targeted", recipients=4_950, languages=1, calls_left=799).warnings
    tight = estimate(
        tier="targeted",
        recipients=4_950,
        languages=1,
        calls_left=799,
        companion=True,
        media_uploads=1,
    )
    assert any("801 metered calls" in w for w in tight.warnings)
    broadcast = estimate(
        tier="citywide", recipients=10_000, tracked=False, org_wide_possible=True, companion=True
    )
    assert (broadcast.strategy, broadcast.send_calls) == (Strategy.ORG_WIDE, 2)


def test_personal_links_send_one_person_per_call() -> None:
    assert estimate(tier="closed_loop", recipients=30, personal_links=True).send_calls == 30


def test_split_batches_and_poll_schedule() -> None:
    assert [len(b) for b in planning.split_batches(list(range(250)))] == [100, 100, 50]
    assert planning.next_poll_offset(0) == 60
    assert planning.next_poll_offset(6) == 23 * 3600
    assert planning.next_poll_offset(7) is None
    with pytest.raises(ValueError):
        planning.split_batches([1], 0)


def test_warnings_are_in_the_readers_language() -> None:
    from django.utils import translation

    with translation.override("zh-hant"):
        result = estimate(tier="targeted", recipients=10_000, calls_left=500)
    assert "釘釘每分鐘最多送達 5,000 名收件人" in result.warnings[0]
    assert "本月只餘 500 次" in result.warnings[1]
