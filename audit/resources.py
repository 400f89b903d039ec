"""The export columns of the audit trail, as a django-import-export resource.

Rows are the dictionaries of `export_values` (one query, no model instances), so exporting a
million events costs one dictionary per row. Every cell goes through neutralise_cell.

The last two columns make the file check its own chain (README "Audit trail"): `content_hash`
(hash = sha256(prev_hash:sequence:content_hash)) and `bridge`, on a row whose predecessor in
the chain is not the file's previous row: the events in between, as "sequence:content_hash"
separated by spaces ("sequence=hash" for a version 1 event), hashes only
(audit.bridges).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import F, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from import_export import fields, resources, widgets

from audit.actions import action_label
from audit.models import AuditEvent
from audit.spreadsheets import neutralise_cell


class _Text(widgets.Widget):  # type: ignore[misc]
    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        return "" if value is None else str(value)


class _Native(widgets.Widget):  # type: ignore[misc]
    """Numbers and booleans stay numbers and booleans (typed cells in XLSX and JSON)."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        return value


class _LocalTime(widgets.Widget):  # type: ignore[misc]
    """ISO 8601 in Hong Kong time with its offset, e.g. 2026-05-01T09:30:00.123456+08:00."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if not isinstance(value, dt.datetime):
            return ""
        # The zone is looked up once per export, not once per row.
        zone = self.__dict__.get("zone")
        if zone is None:
            zone = self.__dict__["zone"] = timezone.get_current_timezone()
        return value.astimezone(zone).isoformat()


class _JsonText(widgets.Widget):  # type: ignore[misc]
    """The data column as compact JSON text; the query already returns it as text."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, str):
            # SQLite keeps the text json.dumps wrote (\uXXXX escapes); show Chinese as Chinese.
            return (
                json.dumps(json.loads(value), ensure_ascii=False, sort_keys=True)
                if "\\u" in value
                else value
            )
        return json.dumps(value, ensure_ascii=False, sort_keys=True)


class _ActionLabel(widgets.Widget):  # type: ignore[misc]
    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        return action_label(value) if value else ""


class _RowField(fields.Field):  # type: ignore[misc]
    """Reads one key of an export row dictionary directly (the base class walks `a__b` paths)."""

    def get_value(self, instance: Any) -> Any:
        if isinstance(instance, dict):
            return instance.get(self.attribute)
        return super().get_value(instance)

    def export(self, instance: Any, **kwargs: Any) -> Any:
        return self.widget.render(self.get_value(instance))


def _field(attribute: str, column: str, widget: widgets.Widget) -> fields.Field:
    return _RowField(attribute=attribute, column_name=column, widget=widget, readonly=True)


class AuditEventResource(resources.ModelResource):  # type: ignore[misc]
    sequence = _field("sequence", "sequence", _Native())
    occurred_at = _field("occurred_at", "occurred_at", _LocalTime())
    actor = _field("actor_label", "actor", _Text())
    actor_department = _field("actor_department", "actor_department", _Text())
    department = _field("department_code", "department", _Text())
    action = _field("action", "action", _Text())
    action_name = _field("action", "action_name", _ActionLabel())
    target_type = _field("target_type", "target_type", _Text())
    target_id = _field("target_id", "target_id", _Text())
    target_label = _field("target_label", "target_label", _Text())
    data = _field("data_text", "data", _JsonText())
    request_id = _field("request_id", "request_id", _Text())
    ip = _field("ip", "ip", _Text())
    otp_verified = _field("otp_verified", "otp_verified", _Native())
    prev_hash = _field("prev_hash", "prev_hash", _Text())
    hash = _field("hash", "hash", _Text())
    content_hash = _field("content_hash", "content_hash", _Text())
    bridge = _field("bridge", "bridge", _Text())

    class Meta:
        model = AuditEvent
        fields = (
            "sequence",
            "occurred_at",
            "actor",
            "actor_department",
            "department",
            "action",
            "action_name",
            "target_type",
            "target_id",
            "target_label",
            "data",
            "request_id",
            "ip",
            "otp_verified",
            "prev_hash",
            "hash",
            "content_hash",
            "bridge",
        )
        export_order = fields

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # import-export looks the field list up again for every row; a million rows make that count.
        self._export_fields = self.get_export_fields()

    def export_resource(
        self, instance: Any, selected_fields: Any = None, **kwargs: Any
    ) -> list[Any]:
        return [neutralise_cell(field.export(instance)) for field in self._export_fields]

    def export_rows(self, rows: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
        for row in rows:
            yield self.export_resource(row)

    def headers(self) -> list[str]:
        headers: list[str] = self.get_export_headers()
        return headers


def export_values(queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent, Any]:
    """The one query an export reads: the resource's attributes, department code joined in."""
    return queryset.values(
        "sequence",
        "occurred_at",
        "actor_label",
        "actor_department",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "request_id",
        "ip",
        "otp_verified",
        "prev_hash",
        "hash",
        "content_hash",
        department_code=F("department__code"),
        data_text=Cast("data", output_field=TextField()),
    )
