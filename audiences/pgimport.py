"""PostgreSQL fast path of the recipient import: COPY the raw lines, check them in SQL, stage them.

The rules stay those of audiences.validation. SQL decides which rows are *plainly* valid, with the
same strict tests as RecipientValidator.fast_checker (the HK mobile test is a table of the 4-digit
starts libphonenumber's pattern allows, see `hk_mobile_prefixes`; districts, tags and enums are
dictionary lookups; a user id's later lines are marked by a window function, run only when a
count finds duplicates). Every other row - none in a clean file, the few bad ones in a rejected
file - gets the full Python check, which accepts it (e.g. "+852 9123 4567") or gives the reason. So a million clean rows never pass through Python one by one, and a rejected file still
reports every bad line with its reason.

Only for CSV text whose physical lines are its records (no NUL, CR other than in CRLF,
\\x01/\\x02, or "\\."): then a line's number is its position in COPY's order, exactly as
csv.reader numbers it. Unquoted text goes to COPY as it is; text with quotes is read by Python's csv
module (the reader the Python path uses, so the cells are the same) and sent one record per line
with the cells joined by \\x1f, as long as no record spans two lines. Other files take the Python
path with identical rules.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DataError, connection, transaction
from django.utils.translation import gettext as _
from psycopg.sql import Literal

from audiences.validation import (
    FORMULA_PREFIXES,
    HK_METADATA,
    HK_MOBILE,
    LANGUAGE_WORDS,
    RISK_WORDS,
    SUBSCRIPTION_WORDS,
    CleanRecipient,
    RecipientValidator,
    RowError,
)

_UNSAFE = ("\x00", "\r", "\x01", "\x02", "\\.")
# Joins the cells of a quoted file's records: a character no cell may then contain.
RECORD_SEPARATOR = "\x1f"
STAGING = "audiences_staging"
_STAGING_COLUMNS = "uid, name, mobile, language, district_id, function_tag, risk_level, subscription_state, tag_ids"
# Python's str.split() whitespace other than the plain space: a name holding any of these is
# normalised by the full check, so it is not "plain".
_ODD_SPACE = r"\t\n\v\f\r\u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Control characters (validation._CONTROL): a name holding one gets the full check, which refuses it.
_CONTROL = r"\u0001-\u0008\u000e-\u001b\u007f"

logger = logging.getLogger("audiences.import")


def hk_mobile_prefixes() -> list[str]:
    """The 4-digit starts of valid HK mobile numbers, read off libphonenumber's pattern.

    The pattern is a 3- or 4-digit prefix followed by any 5 or 4 digits, so whether an 8-digit
    number is a mobile depends on its first four digits only; the PostgreSQL check is then a
    dictionary lookup, much cheaper per row than the long alternation (tested equal on samples).
    """
    if HK_MOBILE is None:
        return []
    return [p for p in (f"{n:04d}" for n in range(10_000)) if HK_MOBILE.fullmatch(p + "0000")]


def hk_mobile_sql_pattern() -> str:
    """libphonenumber's HK mobile pattern as a PostgreSQL regular expression (ASCII digits only)."""
    pattern = (
        HK_METADATA.mobile.national_number_pattern if HK_METADATA and HK_METADATA.mobile else None
    )
    if not pattern:
        return "^$."  # matches nothing: every number then gets the full (library) check
    return "^(?:" + pattern.replace(r"\d", "[0-9]") + ")$"


def lines_are_records(text: str) -> bool:
    """True when each physical line of the (CRLF-normalised) text is one CSV record, unquoted."""
    return '"' not in text and not any(mark in text for mark in _UNSAFE)


def quoted_records_text(text: str) -> str | None:
    """A quoted file's records, one a line with RECORD_SEPARATOR between cells; None if unsuitable.

    Unsuitable: a record spanning lines (a quoted line break), a cell holding the separator or
    one of COPY's marks, or text csv.reader refuses; the Python path then reads the file itself.
    """
    if RECORD_SEPARATOR in text or any(mark in text for mark in _UNSAFE):
        return None
    reader = csv.reader(io.StringIO(text, newline=""))
    out: list[str] = []
    join = RECORD_SEPARATOR.join
    try:
        for cells in reader:
            out.append(join(cells))
            if reader.line_num != len(out):
                return None  # this record spanned two lines: line numbers would drift
    except csv.Error:
        return None
    if text.endswith("\n"):
        out.append("")
    return "\n".join(out)


def create_staging(cursor: Any) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
    cursor.execute(
        f"CREATE TEMP TABLE {STAGING} (uid text PRIMARY KEY, name text, mobile text, language text,"
        " district_id bigint, function_tag text, risk_level text, subscription_state text,"
        " tag_ids bigint[])"
    )


def copy_clean_rows(cursor: Any, rows: Sequence[CleanRecipient]) -> None:
    """COPY rows checked in Python into the staging table."""
    with cursor.cursor.copy(f"COPY {STAGING} ({_STAGING_COLUMNS}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(
                (
                    r.dingtalk_user_id,
                    r.name,
                    r.mobile,
                    r.language,
                    r.district_id,
                    r.function_tag,
                    r.risk_level,
                    r.subscription_state,
                    "{" + ",".join(map(str, r.tag_ids)) + "}",
                )
            )


def _cell(columns: list[str], name: str, default: str = "''") -> str:
    # PostgreSQL arrays are 1-based; a column the file lacks takes the validator's default.
    return f"c[{columns.index(name) + 1}]" if name in columns else default


def _checked_select(columns: list[str], separator: str) -> str:
    """SELECT over audiences_raw: each data line, whether it is plainly valid, and its clean values.

    `%(name)s` placeholders are the literal lookups filled in by stage_and_check. Duplicate user
    ids are not looked at here (see _mark_duplicates): a window over a million rows would double
    the cost of a clean file to find what is almost never there.
    """
    uid, name, mobile = (_cell(columns, c) for c in ("dingtalk_user_id", "name", "mobile"))
    language, district = _cell(columns, "language"), _cell(columns, "district")
    function_tag, risk = _cell(columns, "function_tag"), _cell(columns, "risk_level")
    tags = _cell(columns, "tags")
    first = "".join(f"\\{ch}" if ch in "-]\\^" else ch for ch in FORMULA_PREFIXES)
    if "subscription" in columns:
        subscription = f"%(subs)s::jsonb ->> {_cell(columns, 'subscription')}"
    else:
        subscription = "'subscribed'::text"
    # Only the name needs its own formula test: every other cell is held to a pattern or a list
    # of words that cannot start with = + - @ tab or CR (the mobile cell is 8 digits). The name's
    # pattern: not empty, no formula start, no space at either end, no two spaces in a row and
    # no other whitespace (one regular expression costs half of five separate tests).
    plain = f"""coalesce(
        cardinality(c) = {len(columns)}
        AND {uid} ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]*$' AND char_length({uid}) <= 64
        AND {name} ~ '^[^ {first}{_ODD_SPACE}{_CONTROL}](?: ?[^ {_ODD_SPACE}{_CONTROL}])*$'
        AND char_length({name}) <= 100
        AND octet_length({mobile}) = 8 AND translate({mobile}, '0123456789', '') = ''
        AND %(mobile_prefixes)s::jsonb ? left({mobile}, 4)
        AND language IS NOT NULL AND district_id IS NOT NULL
        AND ({function_tag} = ''
             OR ({function_tag} ~ '^[a-z0-9][a-z0-9_-]*$' AND octet_length({function_tag}) <= 32))
        AND risk_level IS NOT NULL AND subscription_state IS NOT NULL
        AND ({tags} = '' OR ({tags} ~ '^[a-z0-9][a-z0-9_-]*(;[a-z0-9_-]+)*$'
             AND %(tags)s::jsonb ?& string_to_array({tags}, ';'))),
        FALSE)"""
    tag_ids = (
        f"CASE WHEN plain AND {tags} <> '' THEN ARRAY(SELECT DISTINCT (%(tags)s::jsonb ->> w)::bigint"  # noqa: S608
        f" FROM unnest(string_to_array({tags}, ';')) w ORDER BY 1) ELSE '{{}}'::bigint[] END"
    )
    # A line of nothing but separators is blank (csv.reader's rows without a value are skipped).
    sep, not_blank = (Literal(separator).as_string(), Literal(f"[^{separator}]").as_string())
    # Innermost first: split the line, look its words up, decide "plain", then keep the clean
    # values (junk for a row that is not plain: those rows are deleted after the full check).
    # OFFSET 0 keeps each level whole: pulled up, its expressions would be computed again for
    # every use above it.
    return f"""
        SELECT line, plain, CASE WHEN NOT plain THEN t END AS t, {uid} AS uid, {name} AS name,
            '+852' || {mobile} AS mobile, language, district_id, {function_tag} AS function_tag,
            risk_level, subscription_state, {tag_ids} AS tag_ids
        FROM (
            SELECT *, {plain} AS plain
            FROM (
                SELECT line, t, c,
                    %(langs)s::jsonb ->> {language} AS language,
                    (%(districts)s::jsonb ->> lower({district}))::bigint AS district_id,
                    %(risks)s::jsonb ->> {risk} AS risk_level,
                    {subscription} AS subscription_state
                FROM (
                    SELECT line, t, string_to_array(t, {sep}) AS c FROM audiences_raw
                    WHERE line > 1 AND t ~ {not_blank}
                    OFFSET 0
                ) numbered
                OFFSET 0
            ) looked_up
            OFFSET 0
        ) classified"""  # noqa: S608 - positions and names are ours; values come as literals


def _mark_duplicates(cursor: Any) -> None:
    """A user id's second and later lines are not plain: the full check reports them."""
    cursor.execute(f'SELECT count(uid) - count(DISTINCT uid COLLATE "C") FROM {STAGING}')  # noqa: S608
    if not int(cursor.fetchone()[0]):
        return
    cursor.execute(
        f"UPDATE {STAGING} s SET plain = FALSE, t = r.t"  # noqa: S608
        ' FROM (SELECT line, min(line) OVER (PARTITION BY uid COLLATE "C") AS first_line'
        f" FROM {STAGING} WHERE uid IS NOT NULL) d, audiences_raw r"
        " WHERE s.line = d.line AND r.line = d.line AND d.first_line <> d.line AND s.plain"
    )


class StagedCheck(NamedTuple):
    total: int  # data rows
    errors: list[RowError]  # the first ones, in line order
    error_count: int
    file_error: str


def stage_and_check(
    *,
    text: str,
    separator: str = ",",
    columns: list[str],
    validator: RecipientValidator,
    max_rows: int,
    max_reported: int,
    progress: Callable[[int, int], None] | None,
) -> StagedCheck:
    """COPY `text` (header included), check it, and leave every valid row in the staging table.

    `separator` is what stands between the cells of a line: "," for an unquoted file, else
    RECORD_SEPARATOR (see quoted_records_text).

    Must run inside a transaction that the caller rolls back when anything is wrong: the
    temporary tables then vanish.
    """
    with connection.cursor() as cursor:
        _size_session_memory(cursor)
        quoted = _quoted_lookups(cursor, validator)
        _copy_raw_lines(cursor, text)
        too_many = _rows_over_limit(cursor, separator=separator, max_rows=max_rows)
        if too_many is not None:
            return StagedCheck(
                too_many,
                [],
                0,
                # The reader's words (audiences.reader), so both paths refuse alike.
                _("The file has more than %(limit)s rows; the limit here is %(limit)s.")
                % {"limit": max_rows},
            )
        cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
        cursor.execute(
            f"CREATE TEMP TABLE {STAGING} ON COMMIT DROP AS"
            f" {_checked_select(columns, separator) % quoted}"
        )
        _mark_duplicates(cursor)
        cursor.execute(f"SELECT count(*), count(*) FILTER (WHERE NOT plain) FROM {STAGING}")  # noqa: S608
        total, unusual = (int(n) for n in cursor.fetchone())
        if total == 0:
            return StagedCheck(0, [], 0, _("The file has a header row but no recipients."))
        if progress is not None:
            progress(total // 2, total)
        errors: list[RowError] = []
        error_count = 0
        if unusual:
            errors, error_count = _check_unusual(
                cursor,
                columns=columns,
                separator=separator,
                validator=validator,
                max_reported=max_reported,
            )
        cursor.execute(f"ANALYZE {STAGING}")
    return StagedCheck(total, errors, error_count, "")


def _size_session_memory(cursor: Any) -> None:
    # Temporary tables live in the session's local buffers (8 MB by default): a million-row
    # file then thrashes them and the check takes twice as long. The size can only be set
    # before the session's first temporary table: a worker whose connection already used
    # one (the delivery snapshot does) keeps its size, so the attempt has its own savepoint.
    # The sort behind the duplicate check gets memory for this transaction only.
    try:
        with transaction.atomic():
            cursor.execute(
                "SELECT set_config('temp_buffers', %s, false)",
                [settings.AUDIENCES_IMPORT_TEMP_BUFFERS],
            )
    except DataError:
        logger.info("audiences: temp_buffers already fixed for this session; import goes on")
    cursor.execute("SELECT set_config('work_mem', %s, true)", [settings.AUDIENCES_IMPORT_WORK_MEM])


def _quoted_lookups(cursor: Any, validator: RecipientValidator) -> dict[str, str]:
    """The `%(name)s` lookups of _checked_select as SQL literals.

    Inlined as literals, not bound: a bound '...'::jsonb would be parsed again for every row.
    """
    lookups = {
        "mobile_prefixes": json.dumps(dict.fromkeys(hk_mobile_prefixes(), 1)),
        "langs": json.dumps({k: str(v) for k, v in LANGUAGE_WORDS.items()}),
        "districts": json.dumps(validator.districts),
        "risks": json.dumps({k: str(v) for k, v in RISK_WORDS.items()}),
        "subs": json.dumps({k: str(v) for k, v in SUBSCRIPTION_WORDS.items()}),
        "tags": json.dumps(validator.tags),
    }
    return {
        key: Literal(value).as_string(cursor.cursor.connection) for key, value in lookups.items()
    }


def _copy_raw_lines(cursor: Any, text: str) -> None:
    """COPY every physical line of `text` into audiences_raw, numbered from 1 (the header)."""
    cursor.execute("DROP TABLE IF EXISTS audiences_raw")
    cursor.execute(
        "CREATE TEMP TABLE audiences_raw (line bigint GENERATED ALWAYS AS IDENTITY, t text)"
        " ON COMMIT DROP"
    )
    # One field per line: a delimiter and quote that lines_are_records() guarantees absent.
    # Blank lines arrive as NULL, so the identity still counts physical lines.
    with cursor.cursor.copy(
        "COPY audiences_raw (t) FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
    ) as copy:
        step = 8 * 1024 * 1024
        for start in range(0, len(text), step):
            copy.write(text[start : start + step])


def _rows_over_limit(cursor: Any, *, separator: str, max_rows: int) -> int | None:
    """The number of data rows when it is over `max_rows`, else None."""
    cursor.execute("SELECT max(line) FROM audiences_raw")
    if int(cursor.fetchone()[0] or 0) - 1 <= max_rows:
        return None
    # More lines than allowed; count the real rows (blank lines are not rows) to be sure.
    cursor.execute(
        "SELECT count(*) FROM audiences_raw WHERE line > 1 AND t ~ %s",
        [f"[^{separator}]"],
    )
    lines = int(cursor.fetchone()[0])
    return lines if lines > max_rows else None


def _check_unusual(
    cursor: Any,
    *,
    columns: list[str],
    separator: str,
    validator: RecipientValidator,
    max_reported: int,
) -> tuple[list[RowError], int]:
    """The full Python check for every row SQL did not find plainly valid; clean ones are staged."""
    width = len(columns)
    cursor.execute(f"SELECT line, t FROM {STAGING} WHERE NOT plain ORDER BY line")  # noqa: S608
    unusual: list[tuple[int, list[str]]] = [
        (int(line), t.split(separator)) for line, t in cursor.fetchall()
    ]
    i_uid = columns.index("dingtalk_user_id")
    wanted = sorted({cells[i_uid].strip() for _, cells in unusual if len(cells) == width})
    # A plain row holds the first occurrence of its (whitespace-free) user id.
    cursor.execute(
        f"SELECT uid, line FROM {STAGING} WHERE plain AND uid = ANY(%s)",  # noqa: S608
        [wanted],
    )
    plain_line: dict[str, int] = {u: int(line) for u, line in cursor.fetchall()}
    errors: list[RowError] = []
    clean: list[CleanRecipient] = []
    for line, cells in unusual:
        if len(cells) != width:
            errors.append(
                RowError(
                    line,
                    _("has %(got)s cells but the header has %(want)s columns")
                    % {"got": len(cells), "want": width},
                )
            )
            continue
        user_id = cells[i_uid].strip()
        earlier = plain_line.get(user_id)
        if earlier is not None and earlier < line:
            validator.seen.setdefault(user_id, earlier)
        outcome = validator.check(line, dict(zip(columns, cells, strict=True)))
        if isinstance(outcome, RowError):
            errors.append(outcome)
        if earlier is not None and earlier > line and validator.seen.get(user_id) == line:
            # The plain row further down repeats this one's id: it is the duplicate.
            errors.append(
                RowError(
                    earlier,
                    _("dingtalk_user_id %(value)s also appears on line %(first)s")
                    % {"value": user_id, "first": line},
                )
            )
        if not isinstance(outcome, RowError):
            clean.append(outcome)
    cursor.execute(f"DELETE FROM {STAGING} WHERE NOT plain")  # noqa: S608
    if not errors and clean:
        copy_clean_rows(cursor, clean)
    errors.sort(key=lambda e: e.line)
    return errors[:max_reported], len(errors)
