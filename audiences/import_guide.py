"""What the recipient import page tells people about the file: its columns, the values each
accepts, and a sample file (static/samples/recipients-sample.csv) that imports as it is."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from audiences.districts import DISTRICTS

SAMPLE_FILE = "samples/recipients-sample.csv"


@dataclass(frozen=True)
class Column:
    name: str
    required: bool
    allowed: str | Promise


COLUMNS: tuple[Column, ...] = (
    Column(
        "dingtalk_user_id",
        True,
        _("The person's DingTalk user id in your organisation; one row per person."),
    ),
    Column("name", True, _("The person's name, as staff will see it.")),
    Column(
        "mobile",
        True,
        _("An 8-digit Hong Kong mobile number; spaces and +852 are allowed."),
    ),
    Column(
        "language",
        True,
        _("en (English), zh-hant (Traditional Chinese) or both; empty means both."),
    ),
    Column("district", True, _("One of the 18 district codes below (for example ST or KC).")),
    Column(
        "function_tag",
        False,
        _("One short lower-case word, such as frontline, logistics or public; may be empty."),
    ),
    Column("risk_level", False, _("high, medium or low; may be empty.")),
    Column("tags", False, _("Tags the department already has, separated by ;, may be empty.")),
    Column("subscription", False, _("subscribed or unsubscribed; empty means subscribed.")),
)


def import_guide_context() -> dict[str, object]:
    return {
        "import_columns": COLUMNS,
        "import_districts": [(d.code, d.name_en, d.name_zh) for d in DISTRICTS],
        "import_sample": SAMPLE_FILE,
    }
