"""Why a verification failed, as a code and its values: shown in the reader's language.

A verification runs in a worker that has no reader, and its outcome is read later by auditors
in English or Traditional Chinese. So the chain walk (audit.verification) and the anchor check
(audit.anchors) give a reason code with its values; `reason_text` words it in the active language
(the Chain page, its progress JSON), and in English for the hash-chained audit.verified record and
the command line.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

Reason = tuple[str, dict[str, object]]  # a code of REASONS and its values

REASONS: dict[str, Promise] = {
    "missing_before": _(
        "events before #%(sequence)s are missing and no purge checkpoint covers them"
    ),
    "checkpoint_unconfirmed": _(
        "the checkpoint after #%(sequence)s is not confirmed by an audit.purged event"
    ),
    "missing": _("event #%(expected)s is missing (the next one is #%(next)s)"),
    "prev_hash": _("its prev_hash does not match the hash of event #%(sequence)s"),
    "altered": _("its content does not match its hash (the row was altered)"),
    "content_hash": _("its stored content hash is not its content's (the row was altered)"),
    "anchor_hash": _(
        "Anchor of %(day)s disagrees: event #%(sequence)s has hash %(stored)s, the anchor says "
        "%(anchored)s."
    ),
    "anchor_lost": _(
        "Anchor of %(day)s disagrees: the chain ends at #%(head)s, before the anchored event "
        "#%(sequence)s: events were lost (a restore from an older backup, or deletion)."
    ),
    "anchor_missing": _("Anchor of %(day)s disagrees: event #%(sequence)s is missing."),
    "anchor_checkpoint": _(
        "Anchor of %(day)s disagrees: the purge checkpoint #%(sequence)s has another hash than "
        "the anchor."
    ),
    "anchor_file": _("The anchor file %(path)s cannot be read: %(error)s"),
    "anchor_line": _("The anchor file %(path)s: line %(line)s is not an anchor."),
}


def reason_text(code: str, params: Mapping[str, object]) -> str:
    """The reason in the active language ("" for no code; a run finished before reasons had
    codes keeps the English text it recorded, code "recorded")."""
    if not code:
        return ""
    if code == "recorded":
        return str(params.get("text", ""))
    return str(REASONS[code]) % dict(params)


def reason_english(code: str, params: Mapping[str, object]) -> str:
    with translation.override("en"):
        return reason_text(code, params)
