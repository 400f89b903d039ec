"""The hash chain: canonical content, the hash of one event, and the lock that serialises appends.

    content_hash(n) = SHA-256 over the canonical JSON of event n's content (every column
                      except its sequence, prev_hash and hash)
    hash(n)         = SHA-256 of the text "<prev_hash>:<sequence>:<content_hash(n)>"
                      where prev_hash = hash(n-1)

The content hash needs nothing from the chain, so Python computes it before taking the chain
lock, and PostgreSQL links it in the same statement that takes the lock, reads the head and
inserts (`audit_append`, one round trip); SQLite does the same steps in Python. Canonical
means: sorted keys, no whitespace, UTF-8, timestamps in UTC with microseconds, UUIDs and IPs
as text, and integral floats as integers (PostgreSQL's jsonb gives 1e20 back as an integer;
the hash must not care).

Events written before this scheme (version 1) hashed the canonical JSON of all columns
including sequence and prev_hash; verification still accepts that form for them.
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


# The content columns: everything hashed except the chain position, which the link adds.
CONTENT_FIELDS: tuple[str, ...] = tuple(
    name for name in HASHED_FIELDS if name not in ("sequence", "prev_hash")
)


def canonical_bytes(fields: dict[str, Any], names: tuple[str, ...] = CONTENT_FIELDS) -> bytes:
    """The exact bytes whose SHA-256 is the content hash of an event whose columns are `fields`."""
    content = {name: fields[name] for name in names}
    content["occurred_at"] = _timestamp(content["occurred_at"])
    request_id = content["request_id"]
    content["request_id"] = str(request_id) if isinstance(request_id, uuid.UUID) else request_id
    content["ip"] = str(content["ip"]) if content["ip"] is not None else None
    content["data"] = _canonical_value(content["data"])
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def link_hash(prev_hash: str, sequence: int, content: str) -> str:
    """hash(n) from hash(n-1), n and content_hash(n); audit_append computes the same in SQL."""
    return hashlib.sha256(f"{prev_hash}:{sequence}:{content}".encode()).hexdigest()


def event_hash(fields: dict[str, Any]) -> str:
    """The hash an event with these columns (sequence and prev_hash included) must carry."""
    return link_hash(fields["prev_hash"], int(fields["sequence"]), content_hash(fields))


def legacy_event_hash(fields: dict[str, Any]) -> str:
    """Version 1: SHA-256 of the canonical JSON of every hashed column, chain position included."""
    return hashlib.sha256(canonical_bytes(fields, HASHED_FIELDS)).hexdigest()


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


# Created by migration 0003 on PostgreSQL (and again by 0007, which stores the content hash
# in the new column; plpgsql checks columns when it runs, so 0003 creates it either way): the
# whole append in one round trip. Takes the chain
# lock, reads the head (the newest event, else the newest purge checkpoint, else genesis) with
# a fresh snapshot, links the caller's content hash and inserts. The caller computed the
# content hash over exactly the values passed here, so the row verifies like any other.
APPEND_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION audit_append(
    lock_key bigint,
    p_occurred_at timestamptz,
    p_actor_id integer,
    p_actor_label varchar,
    p_actor_department varchar,
    p_department_id bigint,
    p_action varchar,
    p_target_type varchar,
    p_target_id varchar,
    p_target_label varchar,
    p_data jsonb,
    p_request_id uuid,
    p_ip inet,
    p_otp_verified boolean,
    p_content_hash varchar
) RETURNS TABLE(event_id bigint, event_sequence bigint, event_prev_hash varchar, event_hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head_sequence bigint;
    head_hash varchar;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.sequence, e.hash INTO head_sequence, head_hash
        FROM audit_auditevent e ORDER BY e.sequence DESC LIMIT 1;
    IF head_sequence IS NULL THEN
        SELECT c.sequence, c.hash INTO head_sequence, head_hash
            FROM audit_auditcheckpoint c ORDER BY c.sequence DESC LIMIT 1;
    END IF;
    IF head_sequence IS NULL THEN
        head_sequence := 0;
        head_hash := repeat('0', 64);
    END IF;
    RETURN QUERY INSERT INTO audit_auditevent AS e (
        sequence, occurred_at, actor_id, actor_label, actor_department, department_id,
        action, target_type, target_id, target_label, data, request_id, ip, otp_verified,
        content_hash, prev_hash, hash
    ) VALUES (
        head_sequence + 1, p_occurred_at, p_actor_id, p_actor_label, p_actor_department,
        p_department_id, p_action, p_target_type, p_target_id, p_target_label, p_data,
        p_request_id, p_ip, p_otp_verified, p_content_hash, head_hash,
        encode(sha256(convert_to(
            head_hash || ':' || (head_sequence + 1)::text || ':' || p_content_hash, 'UTF8'
        )), 'hex')
    ) RETURNING e.id, e.sequence, e.prev_hash, e.hash;
END
$$;
"""

APPEND_CALL_SQL = (
    "SELECT event_id, event_sequence, event_prev_hash, event_hash FROM audit_append("
    "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s::inet, %s, %s)"
)


def lock_chain() -> None:
    """Serialise appends until the current transaction ends, so the chain cannot fork.

    PostgreSQL: a transaction-scoped advisory lock. SQLite already lets one writer in at a
    time, and the unique sequence turns any race into an error instead of a fork.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
