"""Notices settings."""

from __future__ import annotations

from config.env import env_int

NOTICES_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# A targeted notice reaching more people than this needs two approvers, like a citywide one.
NOTICES_TWO_APPROVER_AUDIENCE = env_int("NOTICES_TWO_APPROVER_AUDIENCE", 10_000)

# Pre-flight figures: the platform's delivery rate and the per-message prices compared.
NOTICES_DELIVERY_RATE_PER_MINUTE = 5_000
NOTICES_SMS_PRICE_HKD = "0.25"
NOTICES_PUSH_PRICE_HKD = "0.03"

# Attachments: DingTalk's own limits (dingtalk.messages.MEDIA_TYPES) apply on top.
NOTICES_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
