"""Venue and check-in CSV files: the small uploads behind a segment's venue rule.

Each file is read and checked whole; nothing is written unless every row is valid. Permission:
manage_audience in the department; each written file is audited with its SHA-256 and counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from accounts.models import Department
from audiences.audit_actions import AudienceAuditAction
from audiences.changes import audience_changing, segments_using
from audiences.models import CheckIn, District, FileFormat, Recipient, Venue
from audiences.reader import Limits, read_file
from audiences.services import require_manage
from audiences.validation import (
    ImportFileError,
    RowError,
    check_header,
    looks_like_formula,
)
from audit.services import audit_record
from common.types import Actor

# Hong Kong's extent with a margin: a venue outside it is a typo (swapped lat/long, missing minus).
HK_LATITUDE = (22.1, 22.6)
HK_LONGITUDE = (113.8, 114.5)

VENUE_COLUMNS = ("code", "name", "district", "latitude", "longitude")
CHECKIN_COLUMNS = ("dingtalk_user_id", "venue_code", "checked_in_at")


@dataclass
class CsvResult:
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    file_error: str = ""

    @property
    def ok(self) -> bool:
        return not self.file_error and not self.errors


def _read_small_csv(
    data: bytes, columns: Sequence[str], result: CsvResult
) -> list[tuple[int, dict[str, str]]]:
    try:
        limits = Limits.from_settings(rows=settings.AUDIENCES_CHECKIN_MAX_ROWS)
        parsed = read_file(data, FileFormat.CSV, limits=limits)
        header = check_header(parsed.header, required=columns, allowed=columns)
    except ImportFileError as exc:
        result.file_error = exc.message
        return []
    if not parsed.rows:
        result.file_error = _("The file has a header row but no data.")
        return []
    if len(parsed.rows) > settings.AUDIENCES_CHECKIN_MAX_ROWS:
        result.file_error = _("The file has %(rows)s rows; the limit is %(limit)s.") % {
            "rows": len(parsed.rows),
            "limit": settings.AUDIENCES_CHECKIN_MAX_ROWS,
        }
        return []
    rows: list[tuple[int, dict[str, str]]] = []
    for line, cells in parsed.rows:
        if len(cells) != len(header):
            result.errors.append(
                RowError(
                    line,
                    _("has %(got)s cells but the header has %(want)s columns")
                    % {"got": len(cells), "want": len(header)},
                )
            )
            continue
        values = {k: v.strip() for k, v in zip(header, cells, strict=True)}
        formula = [
            k
            for k, v in values.items()
            if looks_like_formula(v) and k not in ("latitude", "longitude")
        ]
        if formula:
            result.errors.append(
                RowError(
                    line,
                    _("%(column)s could run as a spreadsheet formula") % {"column": formula[0]},
                )
            )
            continue
        rows.append((line, values))
    result.total = len(parsed.rows)
    return rows


def _district_lookup() -> dict[str, District]:
    lookup: dict[str, District] = {}
    for d in District.objects.all():
        for key in (d.code, d.name_en, d.name_zh, d.name_zh.removesuffix("區")):
            lookup[key.lower()] = d
    return lookup


# --- venues ----------------------------------------------------------------------------------


@transaction.atomic
def venues_import_csv(
    *, actor: Actor, department: Department, data: bytes, file_name: str
) -> CsvResult:
    """Upsert venues (code, name, district, latitude, longitude) on (department, code); all or nothing.

    Permission: manage_audience. Audit: audiences.venues_imported.
    """
    require_manage(actor, department)
    result = CsvResult()
    rows = _read_small_csv(data, VENUE_COLUMNS, result)
    staged = _stage_venues(department, rows, result)
    if not result.ok:
        return result
    # Waiting notices whose segments name these venues, or draw a circle in the department,
    # are returned for approval if what they reach changed (audiences.changes).
    using: set[int] = set()
    for venue in staged:
        using |= segments_using(venue)
    done = audience_changing(using)
    for venue in staged:
        venue.save()
    done({"model": "venue", "id": None, "change": f"imported from {file_name}"[:200]})
    audit_record(
        actor=actor,
        action=AudienceAuditAction.VENUES_IMPORTED,
        department=department,
        target_label=file_name,
        data={
            "sha256": hashlib.sha256(data).hexdigest(),
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
        },
    )
    return result


@dataclass(frozen=True)
class _VenueRow:
    code: str
    values: dict[str, Any]  # the venue's fields as the file gives them


def _stage_venues(
    department: Department, rows: list[tuple[int, dict[str, str]]], result: CsvResult
) -> list[Venue]:
    """The venues to save, counted into `result` (new, changed, unchanged) with each bad row."""
    districts = _district_lookup()
    existing = {v.code: v for v in Venue.objects.filter(department=department)}
    seen: dict[str, int] = {}
    staged: list[Venue] = []
    for line, values in rows:
        checked = _check_venue_row(line, values, seen=seen, districts=districts)
        if isinstance(checked, RowError):
            result.errors.append(checked)
            continue
        venue = existing.get(checked.code) or Venue(department=department, code=checked.code)
        if venue.pk is not None and all(getattr(venue, k) == v for k, v in checked.values.items()):
            result.unchanged += 1
            continue
        if venue.pk is None:
            result.created += 1
        else:
            result.updated += 1
        for k, v in checked.values.items():
            setattr(venue, k, v)
        staged.append(venue)
    return staged


def _check_venue_row(
    line: int, values: dict[str, str], *, seen: dict[str, int], districts: dict[str, District]
) -> _VenueRow | RowError:
    """One venue line's values, or every problem it has. `seen` remembers each code's first line."""
    problems = []
    code = values["code"]
    if not code or len(code) > 40:
        problems.append(_("code is empty or too long"))
    elif code in seen:
        problems.append(
            _("code %(code)s also appears on line %(line)s") % {"code": code, "line": seen[code]}
        )
    seen.setdefault(code, line)
    district = districts.get(values["district"].lower()) if values["district"] else None
    if values["district"] and district is None:
        problems.append(
            _("district %(value)r is not one of the 18 districts") % {"value": values["district"]}
        )
    try:
        lat, lon = float(values["latitude"]), float(values["longitude"])
    except ValueError:
        problems.append(_("latitude and longitude must be decimal degrees"))
        lat = lon = 0.0
    else:
        if not (
            HK_LATITUDE[0] <= lat <= HK_LATITUDE[1] and HK_LONGITUDE[0] <= lon <= HK_LONGITUDE[1]
        ):
            problems.append(
                _("position %(lat)s, %(lon)s is outside Hong Kong") % {"lat": lat, "lon": lon}
            )
    if not values["name"]:
        problems.append(_("name is empty"))
    if problems:
        return RowError(line, "; ".join(problems))
    return _VenueRow(
        code=code,
        values={
            "name": values["name"][:200],
            "district": district,
            "latitude": lat,
            "longitude": lon,
        },
    )


# --- check-ins -------------------------------------------------------------------------------


@transaction.atomic
def checkins_import_csv(
    *, actor: Actor, department: Department, data: bytes, file_name: str
) -> CsvResult:
    """Add check-ins (dingtalk_user_id, venue_code, checked_in_at ISO 8601); all or nothing, idempotent.

    Permission: manage_audience. Audit: audiences.checkins_imported.
    """
    require_manage(actor, department)
    result = CsvResult()
    rows = _read_small_csv(data, CHECKIN_COLUMNS, result)
    staged = _stage_checkins(department, rows, result)
    if not result.ok:
        return result
    before = CheckIn.objects.filter(venue__department=department).count()
    CheckIn.objects.bulk_create(staged, batch_size=1000, ignore_conflicts=True)
    result.created = CheckIn.objects.filter(venue__department=department).count() - before
    result.unchanged = len(staged) - result.created
    audit_record(
        actor=actor,
        action=AudienceAuditAction.CHECKINS_IMPORTED,
        department=department,
        target_label=file_name,
        data={
            "sha256": hashlib.sha256(data).hexdigest(),
            "created": result.created,
            "unchanged": result.unchanged,
        },
    )
    return result


def _stage_checkins(
    department: Department, rows: list[tuple[int, dict[str, str]]], result: CsvResult
) -> list[CheckIn]:
    """The check-ins to add; each bad row goes to `result.errors` instead."""
    venues = dict(Venue.objects.filter(department=department).values_list("code", "pk"))
    wanted = {values["dingtalk_user_id"] for _line, values in rows}
    people = dict(
        Recipient.objects.filter(
            department=department, dingtalk_user_id__in=wanted, erased_at__isnull=True
        ).values_list("dingtalk_user_id", "pk")
    )
    staged: list[CheckIn] = []
    for line, values in rows:
        problems = []
        recipient_id = people.get(values["dingtalk_user_id"])
        if recipient_id is None:
            problems.append(
                _("no recipient with DingTalk user id %(value)r")
                % {"value": values["dingtalk_user_id"]}
            )
        venue_id = venues.get(values["venue_code"])
        if venue_id is None:
            problems.append(
                _("no venue with code %(value)r (import venues first)")
                % {"value": values["venue_code"]}
            )
        when = _checked_in_at(values["checked_in_at"], problems)
        if problems:
            result.errors.append(RowError(line, "; ".join(problems)))
            continue
        if recipient_id is None or venue_id is None or when is None:
            continue  # unreachable: each None above added a problem
        staged.append(CheckIn(recipient_id=recipient_id, venue_id=venue_id, checked_in_at=when))
    return staged


def _checked_in_at(raw: str, problems: list[str]) -> datetime | None:
    when = parse_datetime(raw)
    if when is None:
        problems.append(
            _("checked_in_at %(value)r is not a date and time such as 2026-03-01T14:30+08:00")
            % {"value": raw}
        )
    elif timezone.is_naive(when):
        when = timezone.make_aware(when)  # a local Hong Kong time, as staff write it
    return when
