"""django-import-export resource for recipients (the admin's small-file path).

Rows are checked by the same RecipientValidator as the bulk path before import-export sees them,
so the preview's "invalid" rows carry our line numbers and reasons, and the values it compares
(for new / updated / unchanged) are already normalised (E.164 mobile, district code, tag ids).
"""

from __future__ import annotations

import hashlib
from typing import Any

import tablib
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from import_export import fields, resources, widgets
from import_export.formats import base_formats
from import_export.instance_loaders import CachedInstanceLoader

from accounts import permissions as perms
from accounts.models import Department
from audiences.audit_actions import AudienceAuditAction
from audiences.models import District, FileFormat, Recipient, SubscriptionSource, Tag
from audiences.reader import ZIP_MAGIC, read_file
from audiences.validation import (
    ALL_COLUMNS,
    CleanRecipient,
    ImportFileError,
    RecipientValidator,
    RowError,
    check_header,
)
from audit.services import audit_record
from audit.spreadsheets import neutralise_cell
from common.types import Actor


def recipient_dataset(data: bytes | str) -> tablib.Dataset:
    """An upload read by audiences.reader (the reader of every import path) as a tablib Dataset.

    The rows as read, with their line numbers, ride along as `dataset.recipient_rows` for
    RecipientResource; the Dataset's own rows are cut or padded to the header's width.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    file_format = FileFormat.XLSX if raw.startswith(ZIP_MAGIC) else FileFormat.CSV
    parsed = read_file(raw, file_format)
    width = len(parsed.header)
    dataset = tablib.Dataset(headers=parsed.header)
    for _line, cells in parsed.rows:
        # import-export looks rows up by these values before our check refuses them: no NUL
        # may reach the database (PostgreSQL refuses it); the check reads parsed.rows.
        dataset.append([c.replace("\x00", "\ufffd") for c in (cells + [""] * width)[:width]])
    dataset.recipient_rows = parsed.rows
    return dataset


class RecipientCSV(base_formats.CSV):  # type: ignore[misc]
    """CSV for the admin import, read as bytes by audiences.reader."""

    def is_binary(self) -> bool:
        return True

    def get_read_mode(self) -> str:
        return "rb"

    def create_dataset(self, in_stream: bytes | str, **kwargs: Any) -> tablib.Dataset:
        return recipient_dataset(in_stream)


class RecipientXLSX(base_formats.XLSX):  # type: ignore[misc]
    """XLSX for the admin import, read by audiences.reader (limits first, rows from the data)."""

    def create_dataset(self, in_stream: bytes | str, **kwargs: Any) -> tablib.Dataset:
        return recipient_dataset(in_stream)


class RecipientResource(resources.ModelResource):  # type: ignore[misc]
    dingtalk_user_id = fields.Field(attribute="dingtalk_user_id", column_name="dingtalk_user_id")
    name = fields.Field(attribute="name", column_name="name")
    mobile = fields.Field(attribute="mobile", column_name="mobile")
    language = fields.Field(attribute="language", column_name="language")
    district = fields.Field(
        attribute="district",
        column_name="district",
        widget=widgets.ForeignKeyWidget(District, "code"),
    )
    function_tag = fields.Field(attribute="function_tag", column_name="function_tag")
    risk_level = fields.Field(attribute="risk_level", column_name="risk_level")
    # Validated rows carry tag ids of the department's own vocabulary, never names from elsewhere.
    tags = fields.Field(
        attribute="tags",
        column_name="tags",
        widget=widgets.ManyToManyWidget(Tag, separator=",", field="pk"),
        m2m_add=False,
    )
    subscription = fields.Field(attribute="subscription_state", column_name="subscription")

    class Meta:
        model = Recipient
        fields = ALL_COLUMNS
        import_id_fields = ("dingtalk_user_id",)
        skip_unchanged = True
        report_skipped = True
        use_transactions = True
        clean_model_instances = False  # rows were checked by RecipientValidator already
        skip_diff = False
        # One query loads the department's existing rows instead of one SELECT per row.
        instance_loader_class = CachedInstanceLoader

    def __init__(
        self,
        department: Department | None = None,
        user: Actor = None,
        full_contact: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.department = department
        self.actor = user
        self.full_contact = full_contact
        self._outcomes: dict[int, CleanRecipient | RowError] = {}
        self._columns: list[str] = list(ALL_COLUMNS)
        self._sha256 = ""
        self._district_codes: dict[int, str] = {}

    # --- import ---------------------------------------------------------------------------

    def get_queryset(self) -> Any:
        if self.department is None:
            return Recipient.objects.none()
        return Recipient.objects.filter(department=self.department)

    def get_import_fields(self) -> list[fields.Field]:
        # Columns the file does not have are left as they are, as on the bulk path.
        return [f for f in super().get_import_fields() if f.column_name in self._columns]

    def before_import(self, dataset: Any, **kwargs: Any) -> None:
        if self.department is None:
            raise ValidationError("Choose the department to import into.")
        if self.actor is not None:
            perms.require_department_perm(self.actor, perms.MANAGE_AUDIENCE, self.department)
        try:
            self._columns = check_header(dataset.headers or [])
        except ImportFileError as exc:
            raise ValidationError(exc.message) from None
        dataset.headers = self._columns
        self._sha256 = hashlib.sha256(dataset.csv.encode()).hexdigest()
        validator = RecipientValidator(self.department.pk)
        self._district_codes = dict(District.objects.values_list("pk", "code"))
        read: list[tuple[int, list[str]]] | None = getattr(dataset, "recipient_rows", None)
        if read is None:  # a Dataset built in code: its rows follow the header line
            read = [
                (number + 1, ["" if v is None else str(v) for v in values])
                for number, values in enumerate(dataset, start=1)
            ]
        width = len(self._columns)
        for number, (line, cells) in enumerate(read, start=1):
            if len(cells) != width:
                self._outcomes[number] = RowError(
                    line,
                    _("has %(got)s cells but the header has %(want)s columns")
                    % {"got": len(cells), "want": width},
                )
            else:
                self._outcomes[number] = validator.check(
                    line, dict(zip(self._columns, cells, strict=True))
                )

    def before_import_row(self, row: dict[str, Any], **kwargs: Any) -> None:
        outcome = self._outcomes.get(kwargs["row_number"])
        if outcome is None or isinstance(outcome, RowError):
            raise ValidationError(str(outcome) if outcome else "Row could not be read.")
        row["dingtalk_user_id"] = outcome.dingtalk_user_id
        row["name"] = outcome.name
        row["mobile"] = outcome.mobile
        row["language"] = outcome.language
        row["district"] = (
            District.objects.get(pk=outcome.district_id).code if outcome.district_id else ""
        )
        row["function_tag"] = outcome.function_tag
        row["risk_level"] = outcome.risk_level
        row["tags"] = ",".join(map(str, outcome.tag_ids))
        row["subscription"] = outcome.subscription_state

    def init_instance(self, row: dict[str, Any] | None = None) -> Recipient:
        return Recipient(
            department=self.department,
            subscription_source=SubscriptionSource.IMPORT,
            subscription_changed_at=timezone.now(),
        )

    def import_instance(self, instance: Recipient, row: dict[str, Any], **kwargs: Any) -> None:
        instance._subscription_before = instance.subscription_state if instance.pk else None  # type: ignore[attr-defined]
        super().import_instance(instance, row, **kwargs)

    def before_save_instance(self, instance: Recipient, row: dict[str, Any], **kwargs: Any) -> None:
        before = getattr(instance, "_subscription_before", None)
        if before is not None and before != instance.subscription_state:
            instance.subscription_source = SubscriptionSource.IMPORT
            instance.subscription_changed_at = timezone.now()

    def import_data(self, dataset: Any, dry_run: bool = False, **kwargs: Any) -> Any:
        result = super().import_data(dataset, dry_run=dry_run, **kwargs)
        if self.department is not None and (result.has_errors() or result.has_validation_errors()):
            # Here, after import-export's transaction: a preview's is always rolled back.
            self._audit_rejection(result, dry_run=dry_run, **kwargs)
        return result

    def after_import(self, dataset: Any, result: Any, **kwargs: Any) -> None:
        if kwargs.get("dry_run") or result.has_errors() or result.has_validation_errors():
            return
        totals = result.totals
        audit_record(
            actor=self.actor,
            action=AudienceAuditAction.IMPORTED,
            department=self.department,
            target_label=str(kwargs.get("file_name") or "admin upload"),
            data={
                "path": "admin",
                "file_name": str(kwargs.get("file_name") or ""),
                "dataset_sha256": self._sha256,
                "total": result.total_rows,
                "new": totals.get("new", 0),
                "updated": totals.get("update", 0),
                "unchanged": totals.get("skip", 0),
            },
        )

    @transaction.atomic
    def _audit_rejection(self, result: Any, **kwargs: Any) -> None:
        bad = sorted(n for n, o in self._outcomes.items() if isinstance(o, RowError))
        audit_record(
            actor=self.actor,
            action=AudienceAuditAction.IMPORT_REJECTED,
            department=self.department,
            target_label=str(kwargs.get("file_name") or "admin upload"),
            # Line numbers only, as on the other paths: the reasons quote personal data.
            data={
                "path": "admin",
                "dry_run": bool(kwargs.get("dry_run")),
                "dataset_sha256": self._sha256,
                "total": result.total_rows,
                "invalid": len(bad),
                "first_error_lines": [
                    o.line for n in bad[:20] if isinstance(o := self._outcomes[n], RowError)
                ],
            },
        )

    # --- export ---------------------------------------------------------------------------

    def dehydrate_district(self, recipient: Recipient) -> str:
        return recipient.district.code if recipient.district else ""

    def dehydrate_tags(self, recipient: Recipient) -> str:
        return ";".join(sorted(t.name for t in recipient.tags.all()))

    def dehydrate_mobile(self, recipient: Recipient) -> str:
        return recipient.mobile if self.full_contact else recipient.masked_mobile

    def export_field(self, field: fields.Field, instance: Any, **kwargs: Any) -> Any:
        return neutralise_cell(super().export_field(field, instance, **kwargs))
