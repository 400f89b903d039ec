"""Daily anchors: the chain's head written outside the database, to check the chain against.

Each day the `audit.write_anchor` task appends one JSON line (`day`, `sequence`, `hash`,
`written_at`) to AUDIT_ANCHOR_FILE, which should sit on append-only storage (`chattr +a`, a
WORM share, a log host), and mails it to every department's auditors (and AUDIT_ANCHOR_EMAILS),
so a copy exists that nobody with database access can rewrite. `manage.py audit_verify
--anchors` checks each anchored head against the database and names the first day that
disagrees: a rewritten chain has other hashes, a truncated one lacks the anchored events.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import Membership, Role
from audit.actions import AuditOwnAction
from audit.chain import lock_chain
from audit.models import AuditCheckpoint, AuditEvent
from audit.reasons import Reason, reason_english
from audit.services import audit_record, chain_head
from common.i18n import in_both_languages

logger = logging.getLogger("audit.anchors")


class AnchorFileError(Exception):
    """The anchor file cannot be read as anchors (names the line)."""

    def __init__(self, path: Path, line: int) -> None:
        self.reason: Reason = ("anchor_line", {"path": str(path), "line": line})
        super().__init__(reason_english(*self.reason))


def anchor_file_problem(exc: AnchorFileError | OSError) -> Reason:
    """Why the anchor file cannot be read, as a code of audit.reasons and its values."""
    if isinstance(exc, AnchorFileError):
        return exc.reason
    return ("anchor_file", {"path": str(anchor_path()), "error": exc.strerror or str(exc)})


@dataclass(frozen=True)
class Anchor:
    day: str
    sequence: int
    hash: str


@dataclass(frozen=True)
class AnchorReport:
    ok: bool
    checked: int
    message: str  # in English: the command line
    first_bad_day: str | None = None
    reason: Reason | None = None  # a failure's code of audit.reasons and its values


def anchor_path() -> Path:
    return Path(str(settings.AUDIT_ANCHOR_FILE))


def read_anchors(path: Path) -> list[Anchor]:
    if not path.exists():
        return []
    anchors = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            anchors.append(Anchor(str(raw["day"]), int(raw["sequence"]), str(raw["hash"])))
        except (ValueError, KeyError, TypeError):
            raise AnchorFileError(path, number) from None
    return anchors


def _append(path: Path, anchor: Anchor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {
            "day": anchor.day,
            "sequence": anchor.sequence,
            "hash": anchor.hash,
            "written_at": timezone.now().isoformat(timespec="seconds"),
        }
    )
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


def auditor_addresses() -> list[str]:
    auditors = Membership.objects.filter(role=Role.AUDITOR, user__is_active=True).exclude(
        user__email=""
    )
    addresses = set(auditors.values_list("user__email", flat=True))
    return sorted(addresses | set(settings.AUDIT_ANCHOR_EMAILS))


def mail_anchor(anchor: Anchor) -> None:
    recipients = auditor_addresses()
    if not recipients:
        logger.warning("audit anchor for %s written but nobody to mail it to", anchor.day)
        return
    values = {"day": anchor.day, "sequence": anchor.sequence, "hash": anchor.hash}
    body = in_both_languages(
        lambda: (
            gettext(
                "The portal's audit trail on %(day)s: event #%(sequence)s, hash %(hash)s. Keep this "
                "message: manage.py audit_verify --anchors checks the trail against these values."
            )
            % values
        )
    )
    subject = in_both_languages(lambda: gettext("Audit chain anchor %(day)s") % values, " / ")
    try:
        send_mail(subject, body, None, recipients)
    except OSError:
        logger.exception("audit anchor for %s could not be mailed", anchor.day)


def anchor_write(*, day: dt.date | None = None) -> Anchor | None:
    """Anchor the chain's head for `day` (today); None if that day is anchored already."""
    label = (day or timezone.localdate()).isoformat()
    path = anchor_path()
    with transaction.atomic():
        lock_chain()  # one writer at a time: a day gets one line even if the task runs twice
        if any(a.day == label for a in read_anchors(path)):
            return None
        sequence, head_hash = chain_head()
        anchor = Anchor(label, sequence, head_hash)
        _append(path, anchor)
        audit_record(
            actor=None,
            action=AuditOwnAction.ANCHORED,
            data={"day": label, "sequence": sequence, "hash": head_hash, "file": str(path)},
        )
        transaction.on_commit(lambda: mail_anchor(anchor))
    return anchor


def _disagreement(anchor: Anchor, head_sequence: int, accept_restore: bool) -> Reason | None:
    """Why the database does not match this anchor, or None if it does (or cannot tell)."""
    if anchor.sequence == 0:
        return None
    found = AuditEvent.objects.filter(sequence=anchor.sequence).values_list("hash", flat=True)
    stored = found.first()
    said: dict[str, object] = {"day": anchor.day, "sequence": anchor.sequence}
    if stored is not None:
        if stored != anchor.hash:
            return ("anchor_hash", {**said, "stored": stored, "anchored": anchor.hash})
        return None
    if anchor.sequence > head_sequence:
        if accept_restore:
            return None
        return ("anchor_lost", {**said, "head": head_sequence})
    checkpoint = (
        AuditCheckpoint.objects.filter(sequence__gte=anchor.sequence).order_by("sequence").first()
    )
    if checkpoint is None:
        return ("anchor_missing", said)
    if checkpoint.sequence == anchor.sequence and checkpoint.hash != anchor.hash:
        return ("anchor_checkpoint", said)
    return None  # purged past the retention period


def anchors_verify(anchors: list[Anchor], *, accept_restore: bool = False) -> AnchorReport:
    """Each anchored head against the database, oldest day first; stops at the first mismatch."""
    head_sequence, _hash = chain_head()
    checked = 0
    for anchor in sorted(anchors, key=lambda a: a.day):
        problem = _disagreement(anchor, head_sequence, accept_restore)
        if problem:
            return AnchorReport(False, checked, reason_english(*problem), anchor.day, problem)
        checked += 1
    return AnchorReport(True, checked, f"{checked} daily anchors agree with the audit chain.")
