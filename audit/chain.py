"""The hash chain: canonical content, the hash of one event, and the lock that serialises appends.

hash(n) = SHA-256 over the canonical JSON of event n's content, which includes its sequence
number and prev_hash = hash(n-1). Canonical means: sorted keys, no whitespace, UTF-8,
timestamps in UTC with microseconds, UUIDs and IPs as text, and integral floats as integers
(PostgreSQL's jsonb gives 1e20 back as an integer; the hash must not care).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

GENESIS_HASH = "0" * 64

# The columns a hash covers, in the order verification reads them.
HASHED_FIELDS: tuple[str, ...] = (
    "sequence",
    "occurred_at",
    "actor_id",
    "actor_label",
    "actor_department",
    "department_id",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "data",
    "request_id",
    "ip",
    "otp_verified",
    "prev_hash",
)

# pg_advisory_xact_lock key for the one chain ("audit" in ASCII).
CHAIN_LOCK_KEY = 0x6175646974


def normalise_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON value as the database will give it back (datetimes, UUIDs, Decimals as text)."""
    if not data:
        return {}
    loaded: dict[str, Any] = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return loaded


def _canonical_value(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(v) for v in value]
    return value


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The exact bytes that are hashed for an event whose columns are `fields`."""
    content = {name: fields[name] for name in HASHED_FIELDS}
    content["occurred_at"] = _timestamp(content["occurred_at"])
    request_id = content["request_id"]
    content["request_id"] = str(request_id) if isinstance(request_id, uuid.UUID) else request_id
    content["ip"] = str(content["ip"]) if content["ip"] is not None else None
    content["data"] = _canonical_value(content["data"])
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


# Created by migration 0002 on PostgreSQL: takes the chain lock, then reads the head with a
# fresh snapshot (each statement of a VOLATILE plpgsql function gets one), in one round trip.
LOCKED_HEAD_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION audit_locked_head(lock_key bigint)
RETURNS TABLE(head_sequence bigint, head_hash varchar) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY SELECT e.sequence, e.hash FROM audit_auditevent e ORDER BY e.sequence DESC LIMIT 1;
END
$$;
"""


def locked_head() -> tuple[int, str] | None:
    """Take the chain lock and return the newest event's (sequence, hash), or None if there is none."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT head_sequence, head_hash FROM audit_locked_head(%s)", [CHAIN_LOCK_KEY]
            )
            row = cursor.fetchone()
        return (int(row[0]), str(row[1])) if row else None
    from audit.models import AuditEvent

    return AuditEvent.objects.order_by("-sequence").values_list("sequence", "hash").first()


def lock_chain() -> None:
    """Serialise appends until the current transaction ends, so the chain cannot fork.

    PostgreSQL: a transaction-scoped advisory lock. SQLite already lets one writer in at a
    time, and the unique sequence turns any race into an error instead of a fork.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
