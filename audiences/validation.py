"""Reading and checking recipient files: one set of rules for the admin import, the bulk command and sync.

Everything here is pure (no writes). A file is read into header + rows with their line numbers;
each row is checked into a `CleanRecipient` or a `RowError` naming the line and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import phonenumbers
from django.conf import settings
from django.utils.translation import gettext as _
from phonenumbers import PhoneMetadata, PhoneNumberType

from audiences.models import (
    District,
    Language,
    RiskLevel,
    SubscriptionState,
    Tag,
)

REQUIRED_COLUMNS: tuple[str, ...] = ("dingtalk_user_id", "name", "mobile", "language", "district")
OPTIONAL_COLUMNS: tuple[str, ...] = ("function_tag", "risk_level", "tags", "subscription")
ALL_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
TAG_SEPARATOR = ";"

T = TypeVar("T")

_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
HK_METADATA = PhoneMetadata.metadata_for_region("HK")
# The library's own HK mobile pattern, so the fast path below agrees with phonenumbers exactly.
# ASCII: Python's \d also matches other scripts' digits; those go to the library, which converts them.
HK_MOBILE = (
    re.compile(HK_METADATA.mobile.national_number_pattern or "$^", re.ASCII)
    if HK_METADATA and HK_METADATA.mobile
    else None
)
_PLAIN_NUMBER = re.compile(r"(?:\+?852)?(\d{8})", re.ASCII)
_SEPARATORS = str.maketrans("", "", " -().")

LANGUAGE_WORDS = {
    "en": Language.ENGLISH,
    "english": Language.ENGLISH,
    "zh-hant": Language.TRADITIONAL_CHINESE,
    "zh": Language.TRADITIONAL_CHINESE,
    "tc": Language.TRADITIONAL_CHINESE,
    "繁體中文": Language.TRADITIONAL_CHINESE,
    "中文": Language.TRADITIONAL_CHINESE,
    "both": Language.BOTH,
    "": Language.BOTH,
}
RISK_WORDS = {"high": RiskLevel.HIGH, "medium": RiskLevel.MEDIUM, "low": RiskLevel.LOW, "": ""}
SUBSCRIPTION_WORDS = {
    "": SubscriptionState.SUBSCRIBED,
    "subscribed": SubscriptionState.SUBSCRIBED,
    "yes": SubscriptionState.SUBSCRIBED,
    "unsubscribed": SubscriptionState.UNSUBSCRIBED,
    "no": SubscriptionState.UNSUBSCRIBED,
}


class ImportFileError(Exception):
    """The file as a whole cannot be read (encoding, columns, size, emptiness)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str
    column: str = ""  # the column of the row's first problem, when one column is at fault

    def __str__(self) -> str:
        if self.column:
            return _("Line %(line)s, column %(column)s: %(reason)s") % {
                "line": self.line,
                "column": self.column,
                "reason": self.reason,
            }
        return _("Line %(line)s: %(reason)s") % {"line": self.line, "reason": self.reason}

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "column": self.column, "reason": self.reason}


@dataclass(frozen=True)
class CleanRecipient:
    line: int
    dingtalk_user_id: str
    name: str
    mobile: str
    language: str
    district_id: int
    function_tag: str
    risk_level: str
    tag_ids: tuple[int, ...]
    subscription_state: str


@dataclass
class RecipientFile:
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (line number in the file, cells)
    more: bool = False  # read with stop_after, and the file has more rows than were read


SHOWN_CHARS = 80
# Control characters other than the whitespace a cell may hold (tab, line feed, carriage return):
# NUL and the rest are refused (PostgreSQL cannot store NUL; the others are invisible on a page).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def looks_like_formula(value: str) -> bool:
    """True when a spreadsheet would run the cell: leading whitespace does not hide the trigger."""
    return value.lstrip().startswith(FORMULA_PREFIXES)


def shown(value: str) -> str:
    """A cell as a message quotes it: at most about 80 characters."""
    return value if len(value) <= SHOWN_CHARS else value[: SHOWN_CHARS - 1] + "…"


def normalise_hk_mobile(raw: str) -> str | None:
    """E.164 for a Hong Kong mobile number, else None. Uses libphonenumber's HK metadata."""
    compact = raw.strip().translate(_SEPARATORS)
    match = _PLAIN_NUMBER.fullmatch(compact)
    if match is not None and HK_MOBILE is not None:
        national = match.group(1)
        return f"+852{national}" if HK_MOBILE.fullmatch(national) else None
    try:
        number = phonenumbers.parse(raw, "HK")
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != 852 or not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in (
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _mobile_reason(raw: str) -> str:
    value = shown(raw)
    try:
        number = phonenumbers.parse(raw, "HK")
    except phonenumbers.NumberParseException:
        return _("mobile %(value)r is not a phone number") % {"value": value}
    if number.country_code != 852:
        return _("mobile %(value)r is not a Hong Kong number (+852)") % {"value": value}
    if not phonenumbers.is_valid_number(number):
        return _("mobile %(value)r is not a valid Hong Kong number") % {"value": value}
    kind = phonenumbers.number_type(number)
    return _("mobile %(value)r is a %(kind)s number, not a mobile") % {
        "value": value,
        "kind": str(PhoneNumberType.to_string(kind)).lower().replace("_", " "),
    }


def check_header(
    header: Sequence[str],
    *,
    required: Sequence[str] = REQUIRED_COLUMNS,
    allowed: Sequence[str] = ALL_COLUMNS,
) -> list[str]:
    columns = [h.strip().lower() for h in header]
    missing = [c for c in required if c not in columns]
    extra = [c for c in columns if c not in allowed]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    problems = []
    if missing:
        problems.append(_("missing column(s): %(names)s") % {"names": ", ".join(missing)})
    if extra:
        problems.append(
            _("unknown column(s): %(names)s") % {"names": ", ".join(repr(c) for c in extra)}
        )
    if duplicated:
        problems.append(_("repeated column(s): %(names)s") % {"names": ", ".join(duplicated)})
    if problems:
        raise ImportFileError(
            _("The header row is wrong (%(problems)s). Expected columns: %(expected)s.")
            % {"problems": "; ".join(problems), "expected": ", ".join(allowed)}
        )
    return columns


class RecipientValidator:
    """Checks rows for one department. Build once per file: it loads districts and the tag vocabulary."""

    def __init__(self, department_id: int) -> None:
        self.districts: dict[str, int] = {}
        for district in District.objects.all():
            for key in (
                district.code,
                district.name_en,
                district.name_zh,
                district.name_zh.removesuffix("區"),
            ):
                self.districts[key.lower()] = district.pk
        self.tags: dict[str, int] = dict(
            Tag.objects.filter(department_id=department_id).values_list("name", "id")
        )
        self.seen: dict[str, int] = {}

    def fast_checker(self, columns: list[str]) -> Callable[[int, list[str]], CleanRecipient | None]:
        """A quick accept-only check for the common, clean row; anything unusual returns None
        and gets the full check (with its reasons). A million rows spend most time here."""
        at = {name: columns.index(name) for name in columns}
        i_uid, i_name, i_mobile, i_lang, i_district = (at[c] for c in REQUIRED_COLUMNS)
        i_function, i_risk, i_tags, i_sub = (at.get(c, -1) for c in OPTIONAL_COLUMNS)
        formula_first = frozenset(c for c in FORMULA_PREFIXES)
        others = [i for i in range(len(columns)) if i != i_mobile]
        user_id_ok, slug_ok, mobile_ok = (
            _USER_ID.fullmatch,
            _SLUG.fullmatch,
            HK_MOBILE.fullmatch if HK_MOBILE else None,
        )
        # Plain str values: str() of a TextChoices member costs a method call per row.
        languages = {k: str(v) for k, v in LANGUAGE_WORDS.items()}
        risks = {k: str(v) for k, v in RISK_WORDS.items()}
        subscriptions = {k: str(v) for k, v in SUBSCRIPTION_WORDS.items()}
        districts, seen, subscribed = self.districts, self.seen, str(SubscriptionState.SUBSCRIBED)

        def check(line: int, cells: list[str]) -> CleanRecipient | None:
            for i in others:
                if cells[i][:1] in formula_first:
                    return None
            uid = cells[i_uid]
            if uid in seen or not user_id_ok(uid):
                return None
            name = cells[i_name]
            # isprintable(): no tab, line break, control character or odd space (the full check
            # normalises or refuses those, as the SQL path's pattern sends them to it).
            if (
                not name
                or len(name) > 100
                or "  " in name
                or name != name.strip()
                or not name.isprintable()
            ):
                return None
            mobile = cells[i_mobile]
            if len(mobile) != 8 or mobile_ok is None or not mobile_ok(mobile):
                return None
            language = languages.get(cells[i_lang])
            district_id = districts.get(cells[i_district].lower())
            if language is None or district_id is None:
                return None
            function_tag = cells[i_function] if i_function >= 0 else ""
            if function_tag and not slug_ok(function_tag):
                return None
            risk = risks.get(cells[i_risk]) if i_risk >= 0 else ""
            subscription = subscriptions.get(cells[i_sub]) if i_sub >= 0 else subscribed
            if risk is None or subscription is None or (i_tags >= 0 and cells[i_tags]):
                return None
            seen[uid] = line
            return CleanRecipient(
                line,
                uid,
                name,
                "+852" + mobile,
                language,
                district_id,
                function_tag,
                risk,
                (),
                subscription,
            )

        return check

    def check(self, line: int, values: Mapping[str, str]) -> CleanRecipient | RowError:
        """The full check of one row: its clean values, or every problem it has."""
        unsafe = _unsafe_cells(values) or _formula_problems(values)
        if unsafe:
            return RowError(line, "; ".join(text for _column, text in unsafe), unsafe[0][0])
        problems = _Problems()
        problems.current = "dingtalk_user_id"
        user_id = self._user_id(line, values, problems)
        problems.current = "name"
        name = _name(values, problems)
        problems.current = "mobile"
        mobile = _mobile(values, problems)
        language = _looked_up(
            LANGUAGE_WORDS,
            values,
            "language",
            problems,
            _("language %(value)r is not en, zh-hant or both"),
        )
        district_id = _looked_up(
            self.districts,
            values,
            "district",
            problems,
            _("district %(value)r is not one of the 18 districts (use a code such as SS or KC)"),
        )
        problems.current = "function_tag"
        function_tag = _function_tag(values, problems)
        risk = _looked_up(
            RISK_WORDS,
            values,
            "risk_level",
            problems,
            _("risk_level %(value)r is not high, medium or low"),
        )
        problems.current = "tags"
        tag_ids = self._tag_ids(values, problems)
        subscription = _looked_up(
            SUBSCRIPTION_WORDS,
            values,
            "subscription",
            problems,
            _("subscription %(value)r is not subscribed or unsubscribed"),
        )
        if problems:
            return RowError(line, "; ".join(problems), problems.first_column)
        if (
            mobile is None
            or language is None
            or district_id is None
            or risk is None
            or subscription is None
        ):
            return RowError(line, _("invalid row"))  # unreachable: each None above added a problem
        return CleanRecipient(
            line=line,
            dingtalk_user_id=user_id,
            name=name,
            mobile=mobile,
            language=str(language),
            district_id=district_id,
            function_tag=function_tag,
            risk_level=str(risk),
            tag_ids=tag_ids,
            subscription_state=str(subscription),
        )

    def _user_id(self, line: int, values: Mapping[str, str], problems: list[str]) -> str:
        """The row's user id; the first line of each id is remembered, later ones are refused."""
        user_id = values.get("dingtalk_user_id", "").strip()
        if not _USER_ID.fullmatch(user_id):
            problems.append(
                _(
                    "dingtalk_user_id %(value)r is missing or has characters other than letters, digits, _ . @ -"
                )
                % {"value": shown(user_id)}
            )
        elif user_id in self.seen:
            problems.append(
                _("dingtalk_user_id %(value)s also appears on line %(first)s")
                % {"value": user_id, "first": self.seen[user_id]}
            )
        else:
            self.seen[user_id] = line
        return user_id

    def _tag_ids(self, values: Mapping[str, str], problems: list[str]) -> tuple[int, ...]:
        tag_ids: list[int] = []
        for word in (w.strip().lower() for w in values.get("tags", "").split(TAG_SEPARATOR)):
            if not word:
                continue
            tag_id = self.tags.get(word)
            if tag_id is None:
                problems.append(
                    _("tag %(value)r is not in the department's tag vocabulary")
                    % {"value": shown(word)}
                )
            else:
                tag_ids.append(tag_id)
        return tuple(sorted(set(tag_ids)))


def _unsafe_cells(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """Cells too long to check, or holding NUL or another control character: (column, reason)."""
    limit = settings.AUDIENCES_IMPORT_MAX_CELL_CHARS
    problems: list[tuple[str, str]] = []
    for column, value in values.items():
        if len(value) > limit:
            problems.append(
                (
                    column,
                    _("%(column)s is %(size)s characters long; the limit is %(limit)s")
                    % {"column": column, "size": len(value), "limit": limit},
                )
            )
            continue
        control = _CONTROL.search(value)
        if control is not None:
            problems.append(
                (
                    column,
                    _(
                        "%(column)s %(value)r holds a control character (U+%(code)s) at"
                        " position %(position)s; remove it"
                    )
                    % {
                        "column": column,
                        "value": shown(value),
                        "code": f"{ord(control.group()):04X}",
                        "position": control.start() + 1,
                    },
                )
            )
    return problems


def _formula_problems(values: Mapping[str, str]) -> list[tuple[str, str]]:
    # "+852 9123 4567" is a normal way to write a number; the mobile check is strict anyway.
    return [
        (
            column,
            _("%(column)s %(value)r starts with %(char)r and could run as a spreadsheet formula")
            % {"column": column, "value": shown(value), "char": value.lstrip()[:1] or value[0]},
        )
        for column, value in values.items()
        if value and column != "mobile" and looks_like_formula(value)
    ]


class _Problems(list[str]):
    """A row's problems, remembering the column of the first (set `current` before each check)."""

    current = ""
    first_column = ""

    def append(self, text: str) -> None:
        if not self:
            self.first_column = self.current
        super().append(text)


def _name(values: Mapping[str, str], problems: list[str]) -> str:
    name = " ".join(values.get("name", "").split())
    if not name:
        problems.append(_("name is empty"))
    elif len(name) > 100:
        problems.append(_("name is longer than 100 characters"))
    return name


def _mobile(values: Mapping[str, str], problems: list[str]) -> str | None:
    raw_mobile = values.get("mobile", "").strip()
    mobile = normalise_hk_mobile(raw_mobile) if raw_mobile else None
    if mobile is None:
        problems.append(_mobile_reason(raw_mobile) if raw_mobile else _("mobile is empty"))
    return mobile


def _function_tag(values: Mapping[str, str], problems: list[str]) -> str:
    function_tag = values.get("function_tag", "").strip().lower()
    if function_tag and not _SLUG.fullmatch(function_tag):
        problems.append(
            _("function_tag %(value)r must be a short lower-case word")
            % {"value": shown(function_tag)}
        )
    return function_tag


def _looked_up(
    table: Mapping[str, T],
    values: Mapping[str, str],
    column: str,
    problems: list[str],
    message: str,
) -> T | None:
    """The table's entry for the cell (trimmed, lower case); else `message` names the cell."""
    raw = values.get(column, "")
    found = table.get(raw.strip().lower())
    if found is None:
        if isinstance(problems, _Problems):
            problems.current = column
        problems.append(message % {"value": shown(raw)})
    return found


def check_rows(
    validator: RecipientValidator, columns: list[str], rows: Iterable[tuple[int, list[str]]]
) -> Iterator[CleanRecipient | RowError]:
    width = len(columns)
    fast = validator.fast_checker(columns)
    for line, cells in rows:
        if len(cells) == width:
            clean = fast(line, cells)
            if clean is not None:
                yield clean
                continue
        if len(cells) != width:
            yield RowError(
                line,
                _("has %(got)s cells but the header has %(want)s columns")
                % {"got": len(cells), "want": width},
            )
            continue
        yield validator.check(line, dict(zip(columns, cells, strict=True)))
