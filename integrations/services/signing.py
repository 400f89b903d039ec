"""Signed machine requests: who is calling, is the signature good, and is it within its minute.

Every webhook, CAP alert and status read passes through `signed_request_handle`: size, the
integration, its active flag, the HMAC signature, the rate limit, then the replay cache, and
only then the endpoint's own work, in one transaction. Every refusal is audited in its own
transaction after the attempt rolled back (a flood of refusals is counted per minute instead),
so a refused request leaves nothing behind but its audit event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record
from integrations import crypto
from integrations.audit_actions import IntegrationAuditAction as Action
from integrations.errors import TriggerRefused
from integrations.models import Integration, RateWindow, SeenSignature
from integrations.services import strangers

Result = TypeVar("Result")


class Endpoint(StrEnum):
    """The machine endpoint a signed request came to (recorded on its refusals)."""

    WEBHOOK = "webhook"
    CAP = "cap"
    STATUS = "status"


@dataclass(frozen=True)
class SignedRequest:
    """What the API views hand over: the raw body and the signing headers, nothing parsed."""

    slug: str
    endpoint: Endpoint
    timestamp: str
    signature: str
    body: bytes
    max_bytes: int
    content_length: int | None = None
    content_type: str = ""  # the media type alone, lower case (no parameters)
    source: str | None = None  # the client's address, for counting unknown-address traffic


def _record_refusal(
    integration: Integration | None, request: SignedRequest, refusal: TriggerRefused
) -> None:
    with transaction.atomic():
        audit_record(
            actor=None,
            actor_label=f"integration:{request.slug[:60]}",
            action=Action.TRIGGER_REFUSED,
            target=integration,
            target_label=None if integration else f"unknown integration {request.slug[:60]!r}",
            department=integration.department if integration else None,
            data={
                "endpoint": request.endpoint,
                "status": refusal.status,
                "code": refusal.code,
                "reason": refusal.message,
                "bytes": len(request.body),
            },
        )


def _count(integration: Integration, now: dt.datetime, counter: str) -> int:
    """Add one to a counter of the integration's current minute; returns its new value.

    The counters are RateWindow's `count` (signed requests), `refused` (beyond the limit) and
    `unsigned` (failed signatures).
    """
    window = now.replace(second=0, microsecond=0)
    rows = RateWindow.objects.filter(integration=integration, window_start=window)
    with transaction.atomic():
        if not rows.update(**{counter: F(counter) + 1}):
            try:
                with transaction.atomic():
                    RateWindow.objects.create(
                        integration=integration, window_start=window, **{counter: 1}
                    )
            except IntegrityError:
                # Another worker created the window between our update and insert.
                rows.update(**{counter: F(counter) + 1})
        value: int = rows.values_list(counter, flat=True).get()
    return value


def _rate_limit(integration: Integration, now: dt.datetime) -> None:
    if _count(integration, now, "count") <= integration.rate_limit_per_minute:
        return
    refused = _count(integration, now, "refused")
    retry_after = max(1, 60 - now.second)
    # A burst is recorded by its first refusal in the audit trail and counted in full on the
    # window row, so a misbehaving caller cannot flood the trail (which serialises its writes).
    raise TriggerRefused(
        429,
        "rate_limited",
        f"More than {integration.rate_limit_per_minute} requests this minute; retry after {retry_after} s.",
        retry_after=retry_after,
        audit=refused == 1,
    )


def _secrets(integration: Integration, now: dt.datetime) -> list[str]:
    found = []
    current = crypto.decrypt_secret(integration.secret_encrypted)
    if current is not None:
        found.append(current)
    if (
        integration.previous_secret_encrypted
        and integration.previous_secret_valid_until is not None
        and integration.previous_secret_valid_until > now
    ):
        previous = crypto.decrypt_secret(integration.previous_secret_encrypted)
        if previous is not None:
            found.append(previous)
    return found


def _verify_signature(integration: Integration, request: SignedRequest, now: dt.datetime) -> None:
    if not request.timestamp or not request.signature:
        raise TriggerRefused(
            401,
            "signature_missing",
            "Sign the request: X-Portal-Timestamp (Unix seconds) and X-Portal-Signature "
            "(sha256=HMAC-SHA256 of '<timestamp>.<body>' with the integration's secret).",
        )
    if not request.timestamp.isdigit() or len(request.timestamp) > 12:
        raise TriggerRefused(401, "timestamp_invalid", "X-Portal-Timestamp must be Unix seconds.")
    skew = abs(now.timestamp() - int(request.timestamp))
    window = settings.INTEGRATIONS_SIGNATURE_WINDOW_SECONDS
    if skew > window:
        raise TriggerRefused(
            401,
            "timestamp_expired",
            f"The timestamp is {int(skew)} s away from the portal's clock; the limit is {window} s.",
        )
    if not any(
        crypto.signature_matches(secret, request.timestamp, request.body, request.signature)
        for secret in _secrets(integration, now)
    ):
        raise TriggerRefused(401, "signature_invalid", "The signature does not match the body.")


def _authenticate(request: SignedRequest, now: dt.datetime) -> Integration:
    """Size, integration, active flag, signature, then the rate limit.

    The signature comes before the limit (an HMAC costs microseconds): only signed requests
    count against the caller's minute, so someone who merely knows the address cannot lock the
    Observatory out in a storm by sending junk. Failed signatures are counted on their own and
    audited up to the integration's limit a minute; a flood beyond that is counted, not
    written to the trail one by one.
    """
    integration = Integration.objects.select_related("department").filter(slug=request.slug).first()
    if integration is None:
        # Unauthenticated and unattributable: counted per source and window, audited as one
        # summary event per window (integrations.services.strangers), never one by one.
        strangers.unknown_traffic_count(source=request.source, now=now)
        raise TriggerRefused(
            404, "unknown_integration", "There is no integration at this address.", audit=False
        )
    too_big = (request.content_length or 0) > request.max_bytes or len(
        request.body
    ) > request.max_bytes
    try:
        try:
            # Refusals before the signature is checked are the integration's own (its
            # department's auditors see them) but unauthenticated: each is counted, and audited
            # up to the integration's limit a minute, like a bad signature.
            if not integration.active or not integration.department.is_active:
                raise TriggerRefused(403, "integration_disabled", "This integration is disabled.")
            if too_big:
                raise TriggerRefused(
                    413,
                    "too_large",
                    f"The body is larger than the {request.max_bytes} bytes allowed.",
                )
            _verify_signature(integration, request, now)
        except TriggerRefused as refusal:
            failed = _count(integration, now, "unsigned")
            refusal.audit = failed <= integration.rate_limit_per_minute
            raise
        _rate_limit(integration, now)
    except TriggerRefused as refusal:
        refusal.integration = integration
        raise
    return integration


def _claim_signature(integration: Integration, request: SignedRequest, now: dt.datetime) -> None:
    """Each signature is accepted once; the unique row is the replay cache, shared by all workers."""
    try:
        with transaction.atomic():
            SeenSignature.objects.create(
                integration=integration,
                signature_digest=crypto.digest(request.signature.encode()),
                seen_at=now,
            )
    except IntegrityError:
        raise TriggerRefused(
            409,
            "replayed",
            "This exact signed request was already received; sign each request anew.",
        ) from None


def _mark_used(integration: Integration, now: dt.datetime) -> None:
    Integration.objects.filter(pk=integration.pk).update(last_used_at=now)


def signed_request_handle(
    request: SignedRequest, work: Callable[[Integration, dt.datetime], Result]
) -> Result:
    """Authenticate, run `work(integration, now)` in one transaction, and audit any refusal.

    `work` raises TriggerRefused to refuse; whatever it created then rolls back.
    """
    now = timezone.now()
    integration: Integration | None = None
    try:
        integration = _authenticate(request, now)
        try:
            with transaction.atomic():
                _claim_signature(integration, request, now)
                result = work(integration, now)
                _mark_used(integration, now)
        except IntegrityError:
            # A concurrent request with the same key won the trigger's unique constraint.
            raise TriggerRefused(
                409,
                "in_progress",
                "The same trigger is being prepared by another request; retry to get its result.",
            ) from None
        return result
    except TriggerRefused as refusal:
        named = integration or refusal.integration
        if refusal.audit:
            _record_refusal(named if isinstance(named, Integration) else None, request, refusal)
        raise


def seen_signatures_purge(*, now: dt.datetime | None = None) -> int:
    """Forget signatures and rate windows older than the signature window (they can't be replayed)."""
    now = now or timezone.now()
    horizon = now - dt.timedelta(seconds=2 * settings.INTEGRATIONS_SIGNATURE_WINDOW_SECONDS)
    deleted, _ = SeenSignature.objects.filter(seen_at__lt=horizon).delete()
    RateWindow.objects.filter(window_start__lt=horizon).delete()
    strangers.unknown_traffic_summarise(now=now)
    return deleted
