"""Erasure, venue and check-in CSV imports, the venue radius rule, and the issue's bad input."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core.exceptions import PermissionDenied
from django.test import override_settings

from audiences.importing import recipients_import
from audiences.models import (
    CheckIn,
    District,
    Recipient,
    RecipientTag,
    Segment,
    SegmentMember,
    SubscriptionState,
    Tag,
    Venue,
)
from audiences.resources import RecipientResource
from audiences.selectors import EARTH_RADIUS_M, SegmentRule, rule_count, segment_count
from audiences.services import SegmentInput, recipient_erase, segment_create
from audiences.testing import csv_bytes, recipient_row
from audiences.venues import checkins_import_csv, venues_import_csv
from audit.models import AuditEvent

CENTRE = (22.3300, 114.1600)  # Sham Shui Po


def _seed(cast, n: int, **overrides: str) -> None:
    report = recipients_import(
        actor=None,
        department=cast.department,
        data=csv_bytes(recipient_row(i, **overrides) for i in range(n)),
        file_name="seed.csv",
    )
    assert report.written, report.as_dict()


def _north_of(metres: float) -> float:
    return CENTRE[0] + math.degrees(metres / EARTH_RADIUS_M)


# --- erasure -------------------------------------------------------------------------------


def test_erasure_blanks_the_person_keeps_an_anonymous_row_and_is_audited(cast_a):
    _seed(cast_a, 3)
    tag = Tag.objects.create(department=cast_a.department, name="volunteer")
    person = Recipient.objects.get(dingtalk_user_id="u0000001")
    RecipientTag.objects.create(recipient=person, tag=tag)
    venue = Venue.objects.create(
        department=cast_a.department, code="V1", name="Shop", latitude=22.33, longitude=114.16
    )
    CheckIn.objects.create(
        recipient=person, venue=venue, checked_in_at=datetime(2026, 3, 1, tzinfo=UTC)
    )
    everyone = segment_create(actor=None, department=cast_a.department, data=SegmentInput("All"))
    chosen = segment_create(
        actor=None,
        department=cast_a.department,
        data=SegmentInput("Chosen", kind="list", member_user_ids=["u0000001", "u0000002"]),
    )
    assert segment_count(everyone) == 3

    erased = recipient_erase(
        actor=cast_a.department_admin, recipient=person, reason="PDPO request 42"
    )

    row = Recipient.objects.get(pk=person.pk)  # the row stays: delivery rows keep pointing at it
    assert erased.pk == row.pk
    assert (row.name, row.mobile, row.function_tag, row.risk_level) == ("", "", "", "")
    assert row.district_id is None
    assert row.dingtalk_user_id.startswith("erased-")
    assert row.subscription_state == SubscriptionState.UNSUBSCRIBED
    assert row.erased_at is not None
    assert str(row) == f"erased recipient #{row.pk}"
    assert not CheckIn.objects.filter(recipient_id=row.pk).exists()
    assert not RecipientTag.objects.filter(recipient_id=row.pk).exists()
    assert not SegmentMember.objects.filter(recipient_id=row.pk).exists()
    assert segment_count(everyone) == 2
    assert segment_count(Segment.objects.get(pk=chosen.pk)) == 1
    assert Recipient.objects.filter(department=cast_a.department).count() == 3

    event = AuditEvent.objects.get(action="audiences.erased")
    assert event.actor == cast_a.department_admin
    assert event.data == {
        "reason": "PDPO request 42",
        "deliveries_anonymised": 0,
        "batches_rewritten": 0,
        "deliveries_not_sent": 0,
    }
    assert "u0000001" not in str(event.target_label)
    assert "Person 1" not in str(event.data)

    # A second request is a no-op, not a second event.
    recipient_erase(actor=cast_a.department_admin, recipient=row)
    assert AuditEvent.objects.filter(action="audiences.erased").count() == 1
    # The person can come back later as a new recipient under the same user id.
    _seed(cast_a, 2)
    assert Recipient.objects.filter(dingtalk_user_id="u0000001", erased_at__isnull=True).exists()


def test_only_the_owning_departments_admin_may_erase(cast_a, cast_b):
    _seed(cast_a, 1)
    person = Recipient.objects.get()
    for actor in (cast_b.department_admin, cast_a.pr_officer, cast_a.auditor):
        with pytest.raises(PermissionDenied):
            recipient_erase(actor=actor, recipient=person)
    assert Recipient.objects.get().name == "Person 0"
    assert not AuditEvent.objects.filter(action="audiences.erased").exists()


# --- venue and check-in CSV files ----------------------------------------------------------


VENUES_OK = (
    "code,name,district,latitude,longitude\n"
    f"NEAR,Near shop,SS,{_north_of(200):.6f},{CENTRE[1]}\n"
    f"EDGE,Edge shop,SS,{_north_of(480):.6f},{CENTRE[1]}\n"
    f"FAR,Far shop,SS,{_north_of(900):.6f},{CENTRE[1]}\n"
    "KC1,Kowloon City stall,KC,22.3280,114.1910\n"
).encode()


def test_venue_import_then_reimport_changes_nothing(cast_a):
    result = venues_import_csv(
        actor=cast_a.department_admin, department=cast_a.department, data=VENUES_OK, file_name="v"
    )
    assert result.ok, result.errors
    assert (result.created, result.updated, result.unchanged) == (4, 0, 0)
    assert Venue.objects.get(code="KC1").district == District.objects.get(code="KC")
    again = venues_import_csv(
        actor=cast_a.department_admin, department=cast_a.department, data=VENUES_OK, file_name="v"
    )
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert AuditEvent.objects.filter(action="audiences.venues_imported").count() == 2


def test_bad_venue_file_writes_nothing_and_names_every_line(cast_a):
    data = (
        b"code,name,district,latitude,longitude\n"
        b"A,Good,SS,22.33,114.16\n"
        b"B,Swapped,SS,114.16,22.33\n"
        b"A,Again,SS,22.33,114.16\n"
        b"C,Nowhere,Atlantis,22.33,114.16\n"
        b"D,=HYPERLINK(1),SS,22.33,114.16\n"
        b"E,Words,SS,north,east\n"
    )
    result = venues_import_csv(
        actor=cast_a.department_admin, department=cast_a.department, data=data, file_name="v"
    )
    reasons = {e.line: e.reason for e in result.errors}
    assert set(reasons) == {3, 4, 5, 6, 7}
    assert "outside Hong Kong" in reasons[3]
    assert "also appears on line 2" in reasons[4]
    assert "Atlantis" in reasons[5]
    assert "formula" in reasons[6]
    assert "decimal degrees" in reasons[7]
    assert not Venue.objects.exists()
    assert not AuditEvent.objects.filter(action="audiences.venues_imported").exists()


def test_checkin_import_all_or_nothing_and_idempotent(cast_a, cast_b):
    _seed(cast_a, 3)
    _seed(cast_b, 1)
    venues_import_csv(actor=None, department=cast_a.department, data=VENUES_OK, file_name="v")
    good = (
        b"dingtalk_user_id,venue_code,checked_in_at\n"
        b"u0000000,NEAR,2026-03-01T12:00:00+08:00\n"
        b"u0000001,FAR,2026-03-01 13:00\n"
    )
    result = checkins_import_csv(
        actor=cast_a.department_admin, department=cast_a.department, data=good, file_name="c"
    )
    assert result.ok, result.errors
    assert result.created == 2
    again = checkins_import_csv(
        actor=cast_a.department_admin, department=cast_a.department, data=good, file_name="c"
    )
    assert (again.created, again.unchanged) == (0, 2)
    # A naive time is Hong Kong time.
    assert CheckIn.objects.get(venue__code="FAR").checked_in_at == datetime(
        2026, 3, 1, 5, 0, tzinfo=UTC
    )

    bad = (
        b"dingtalk_user_id,venue_code,checked_in_at\n"
        b"u0000002,NEAR,2026-03-02T12:00:00+08:00\n"
        b"nobody,NEAR,2026-03-02T12:00:00+08:00\n"
        b"u0000002,NOPE,2026-03-02T12:00:00+08:00\n"
        b"u0000002,NEAR,yesterday\n"
        b"u0000002,NEAR\n"
    )
    rejected = checkins_import_csv(
        actor=cast_a.department_admin, department=cast_a.department, data=bad, file_name="c"
    )
    reasons = {e.line: e.reason for e in rejected.errors}
    assert set(reasons) == {3, 4, 5, 6}
    assert "nobody" in reasons[3]
    assert "NOPE" in reasons[4]
    assert "yesterday" in reasons[5]
    assert "2 cells" in reasons[6]
    assert CheckIn.objects.count() == 2


def test_checkins_cannot_name_another_departments_people(cast_a, cast_b):
    _seed(cast_a, 1)
    Recipient.objects.create(
        department=cast_b.department,
        dingtalk_user_id="fehd1",
        subscription_source="import",
        subscription_changed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    venues_import_csv(actor=None, department=cast_a.department, data=VENUES_OK, file_name="v")
    data = b"dingtalk_user_id,venue_code,checked_in_at\nfehd1,NEAR,2026-03-01T12:00:00+08:00\n"
    result = checkins_import_csv(
        actor=cast_a.department_admin, department=cast_a.department, data=data, file_name="c"
    )
    assert not result.ok
    assert not CheckIn.objects.exists()
    with pytest.raises(PermissionDenied):
        checkins_import_csv(
            actor=cast_b.department_admin, department=cast_a.department, data=data, file_name="c"
        )


def test_venue_rule_radius_venues_and_time_window(cast_a):
    _seed(cast_a, 5)
    venues_import_csv(actor=None, department=cast_a.department, data=VENUES_OK, file_name="v")
    people = {r.dingtalk_user_id: r for r in Recipient.objects.all()}
    venues = {v.code: v for v in Venue.objects.all()}
    hk = dt_timezone(timedelta(hours=8))
    inside = datetime(2026, 3, 3, 12, 0, tzinfo=hk)
    for uid, code, when in (
        ("u0000000", "NEAR", inside),  # 200 m away, in the window
        ("u0000001", "EDGE", inside),  # 480 m away, in the window
        ("u0000002", "FAR", inside),  # 900 m away
        ("u0000003", "NEAR", inside - timedelta(days=7)),  # near, but before the window
        ("u0000004", "KC1", inside),  # a named venue, kilometres away
    ):
        CheckIn.objects.create(recipient=people[uid], venue=venues[code], checked_in_at=when)
    window = {
        "checked_in_from": datetime(2026, 3, 1, tzinfo=hk),
        "checked_in_to": datetime(2026, 3, 7, tzinfo=hk),
    }

    def count(radius: int | None, venue_codes: tuple[str, ...] = ()) -> int:
        return rule_count(
            SegmentRule(
                department_id=cast_a.department.pk,
                venue_rule=True,
                centre=CENTRE if radius else None,
                radius_m=radius,
                venue_ids=[venues[c].pk for c in venue_codes],
                **window,
            )
        )

    assert count(100) == 0
    assert count(300) == 1
    assert count(500) == 2
    assert count(1000) == 3
    assert count(500, ("KC1",)) == 3  # within R metres OR at these venues
    assert count(None, ("KC1",)) == 1
    assert count(None) == 0  # a rule naming no place matches nobody
    saved = segment_create(
        actor=None,
        department=cast_a.department,
        data=SegmentInput(
            "Food recall",
            venue_rule=True,
            centre_latitude=CENTRE[0],
            centre_longitude=CENTRE[1],
            radius_m=500,
            venues=[venues["KC1"]],
            **window,
        ),
    )
    assert segment_count(saved) == 3


# --- the bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (
            "dingtalk_user_id,name,mobile,language,district\nu1,陳大文,91234567,en,SS\n".encode(
                "utf-16"
            ),
            "not UTF-8",
        ),
        (
            "dingtalk_user_id,name,mobile,language,district\nu1,A,91234567,en,SS\nu2,陳大文,91234568,en,SS\n".encode(
                "big5"
            ),
            "Line 3 is not UTF-8",
        ),
        (
            b"dingtalk_user_id,name,mobile,language\nu1,A,91234567,en\n",
            "missing column(s): district",
        ),
        (
            b"dingtalk_user_id,name,mobile,language,district,district\nu1,A,91234567,en,SS,SS\n",
            "repeated column",
        ),
        (
            b"dingtalk_user_id,name,mobile,language,district,notes\nu1,A,91234567,en,SS,x\n",
            "unknown column(s): 'notes'",
        ),
    ],
)
def test_unreadable_files_leave_the_data_as_it_was(cast_a, data, message):
    _seed(cast_a, 2)
    before = list(Recipient.objects.values_list("pk", "name", "updated_at"))
    report = recipients_import(
        actor=cast_a.department_admin, department=cast_a.department, data=data, file_name="f.csv"
    )
    assert message in report.file_error
    assert not report.written
    assert list(Recipient.objects.values_list("pk", "name", "updated_at")) == before
    assert AuditEvent.objects.filter(action="audiences.import_rejected").count() == 1


@pytest.mark.parametrize("quoted", [False, True], ids=["line-per-record", "quoted-csv"])
def test_bad_rows_are_each_reported_and_nothing_changes(cast_a, quoted):
    # Both the SQL-checked path (no quotes) and the csv-module path (quotes) give the same answer.
    _seed(cast_a, 3)
    before = list(Recipient.objects.values_list("pk", "name", "mobile", "updated_at"))
    name = 'Chan "Tai Man"' if quoted else "Chan Tai Man"
    rows = [
        recipient_row(0, name="Renamed"),
        recipient_row(10, name=name),
        recipient_row(11, mobile="21234567"),
        recipient_row(12, mobile="12345"),
        recipient_row(13, district="Atlantis"),
        recipient_row(14, function_tag="@SUM(A1)"),
        recipient_row(10),
        recipient_row(15, language="fr"),
        recipient_row(16, mobile="+852 9123 4567"),
    ]
    report = recipients_import(
        actor=cast_a.department_admin,
        department=cast_a.department,
        data=csv_bytes(rows),
        file_name="f.csv",
    )
    reasons = {e.line: e.reason for e in report.errors}
    assert set(reasons) == {4, 5, 6, 7, 8, 9}, reasons
    assert "fixed line" in reasons[4]
    assert "'12345'" in reasons[5]
    assert "Atlantis" in reasons[6]
    assert "formula" in reasons[7]
    assert "also appears on line 3" in reasons[8]
    assert "language 'fr'" in reasons[9]
    assert report.error_count == 6
    assert not report.written
    assert list(Recipient.objects.values_list("pk", "name", "mobile", "updated_at")) == before


def test_a_clean_file_with_unusual_but_valid_cells_is_imported(cast_a):
    Tag.objects.create(department=cast_a.department, name="volunteer")
    Tag.objects.create(department=cast_a.department, name="first-aid")
    rows = [
        recipient_row(0, mobile="+852 9123 4567", language="English", district="Sham Shui Po"),
        recipient_row(1, name="  Wong   Siu Ming ", tags="volunteer;first-aid"),
        recipient_row(2, tags="first-aid;volunteer;first-aid", risk_level="HIGH"),
    ]
    report = recipients_import(
        actor=None, department=cast_a.department, data=csv_bytes(rows), file_name="f.csv"
    )
    assert report.written, report.errors
    first = Recipient.objects.get(dingtalk_user_id="u0000000")
    assert (first.mobile, first.language, first.district.code) == ("+85291234567", "en", "SS")
    second = Recipient.objects.get(dingtalk_user_id="u0000001")
    assert second.name == "Wong Siu Ming"
    assert sorted(second.tags.values_list("name", flat=True)) == ["first-aid", "volunteer"]
    third = Recipient.objects.get(dingtalk_user_id="u0000002")
    assert third.risk_level == "high"
    assert third.tags.count() == 2
    again = recipients_import(
        actor=None, department=cast_a.department, data=csv_bytes(rows), file_name="f.csv"
    )
    assert (again.new, again.updated, again.unchanged) == (0, 0, 3)


def test_files_over_the_limits_are_refused_whole(cast_a):
    data = csv_bytes(recipient_row(i) for i in range(5))
    report = recipients_import(
        actor=None, department=cast_a.department, data=data, file_name="f.csv", max_rows=4
    )
    assert "The file has more than 4 rows; the limit here is 4." in report.file_error
    with override_settings(AUDIENCES_IMPORT_MAX_BYTES=len(data) - 1):
        report = recipients_import(
            actor=None, department=cast_a.department, data=data, file_name="f.csv"
        )
    assert "the limit is" in report.file_error
    assert "Split it" in report.file_error
    assert not Recipient.objects.exists()


def test_blank_lines_do_not_shift_line_numbers(cast_a):
    header, first, second = csv_bytes([recipient_row(0), recipient_row(1, district="Mars")]).split(
        b"\n"
    )[:3]
    data = b"\n".join([header, first, b"", b",,,,,,,,", second]) + b"\n"
    report = recipients_import(
        actor=None, department=cast_a.department, data=data, file_name="f.csv"
    )
    assert [e.line for e in report.errors] == [5]
    assert report.total == 2


@pytest.mark.parametrize("value", ["=1+2", "+4412", "-cmd", "@SUM(A1)", "\tx", "\rx", " =1"])
def test_exports_neutralise_formula_cells(cast_a, value):
    _seed(cast_a, 1)
    Recipient.objects.update(name=value)
    resource = RecipientResource(
        department=cast_a.department, user=cast_a.department_admin, full_contact=True
    )
    exported = resource.export(queryset=Recipient.objects.all())
    assert exported.dict[0]["name"] == "'" + value
    assert exported.dict[0]["dingtalk_user_id"] == "u0000000"  # ordinary text untouched
