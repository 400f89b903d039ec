"""Helpers of the zh-Hant completeness test: the catalogue's gaps and English left in a page.

A page's text is what a person reads or hears: text nodes and the attributes a screen reader
or the browser shows (title, aria-label, placeholder, alt, button values), outside <script>,
<style> and <template>, and outside any element marked lang="en" (the notice's English
version, the "English" language switch): English there is on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
# Ours, and the third-party apps' (django-axes, django-otp) that they do not ship.
PO_FILES = tuple(
    _ROOT / catalogue / "zh_Hant" / "LC_MESSAGES" / "django.po"
    for catalogue in ("locale", "locale_thirdparty")
)

# Words that may stay in Latin letters in a Chinese page, and why. Codes and proper names only.
ALLOWED_WORDS = {
    # Protocols, formats and products Hong Kong readers see in Latin letters in Chinese text too.
    "TOTP",
    "SMS",
    "CSV",
    "XLSX",
    "JSON",
    "PDF",
    "URL",
    "API",
    "HTTP",
    "HTTPS",
    "ID",
    "IP",
    "QR",
    "CAP",
    "UTC",
    "OTP",
    "MB",
    "KB",
    "HMAC",
    "SHA",
    "AES",
    "Cookie",
    "Excel",
    "Webhook",
    "Token",
    # DingTalk's own names for an app's credentials, as its console shows them to Chinese users.
    "AppKey",
    "AppSecret",
    "AgentId",
    # Markdown: a message kind's proper name.
    "Markdown",
    # Django admin's own zh-Hant text for multi-selects names the keys: 按住 "Control" … Mac … "Command".
    "Control",
    "Command",
    "Mac",
    # Django admin's boolean icons carry alt="True"/"False", hard-coded in django.contrib.admin.
    "True",
    "False",
    # File format codes, as the import page's format menu names them.
    "csv",
    "xlsx",
    # Example tag slugs in a help text (tags are codes people type: frontline, logistics).
    "frontline",
    "logistics",
    # The values an import file's columns accept (the import guide): codes the file contains.
    "public",
    "high",
    "medium",
    "low",
    "subscribed",
    "unsubscribed",
    "en",
    "zh",
    "hant",
    "both",
    # A file format's name (the auditors' chain proof, JSON Lines) and the framework's name in
    # the back office's title (Django's own zh-Hant catalogue keeps it in Latin letters).
    "Lines",
    "Django",
    # Authenticator apps' product names, as the enrolment page suggests them.
    "Microsoft",
    "Google",
    "Authenticator",
}
_AXES_TIME = (
    r"[\d-]+ [\d:.]+[+-]\d\d:\d\d"  # a datetime as str() gives it: 2026-12-05 17:28:10.7+00:00
)
# Text fragments that are data or codes, not words to translate.
ALLOWED_PATTERNS = [
    re.compile(r"\b(?:[A-Z2-7]{4} ){3,}[A-Z2-7]{1,4}\b"),  # a TOTP key to type (base32, grouped)
    re.compile(r"\b[a-z]{2,5}\.(officer|supervisor2?|admin|auditor|sysadmin)\b"),  # usernames
    re.compile(r"\S+@\S+"),  # e-mail addresses
    re.compile(r"(https?|env|file):\S*"),  # addresses and secret references (env:NAME, file:/path)
    re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b"),  # hashes and their abbreviations
    re.compile(r"\b[a-z]+(?:[.:][a-z0-9_]+)+\b"),  # codes: audit actions, task names, role:x
    re.compile(r"\b[a-z]+\.[A-Z][A-Za-z]+(?: \d+)?\b"),  # model labels (accounts.Department 1)
    re.compile(r"\b[a-z]{2,}\d{5,}\b"),  # DingTalk user ids (wsd0000001)
    re.compile(r"\b[A-Z][A-Z0-9]+\*?(?=\W|$)"),  # all-capital codes: WSD, WRAINB, TC8*
    re.compile(r"\{[a-z_]+\}"),  # template placeholders ({district})
    re.compile(r"\bmd5\b"),  # the test settings' password hasher, named in the user form
    re.compile(r"\S{1,8}\*{4,}"),  # masked secrets and password hashes (Yz********)
    # django-axes' rows, as its lists and pages title them: its models' __str__ is English
    # built in code (axes/models.py), and what it stores for a header the request did not send
    # is "<unknown>". The username may already be blanked out as a name or code by then.
    re.compile(r"\bAccess Log for\s+(?:\S+\s+)?@ " + _AXES_TIME),
    re.compile(r"\bAttempted Access: " + _AXES_TIME),
    re.compile(r"\bFailed access: user\s+(?:\S+\s+)?(?:locked out )?on " + _AXES_TIME + r" from "),
    re.compile(r"<unknown>"),
]
_WORD = re.compile("[A-Za-z][A-Za-z'\u2019]+")
_SKIP_TAGS = {"script", "style", "template", "noscript"}
_SHOWN_ATTRS = ("title", "aria-label", "placeholder", "alt")
_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


def untranslated_entries(paths: Iterable[Path] = PO_FILES) -> list[str]:
    """msgids with an empty translation or marked fuzzy, in each catalogue."""
    problems: list[str] = []
    for path in paths:
        problems.extend(f"{path.parents[2].name}: {gap}" for gap in _catalogue_gaps(path))
    return problems


def _catalogue_gaps(path: Path) -> list[str]:
    problems: list[str] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [ln for ln in block.strip().splitlines() if ln and not ln.startswith("#~")]
        if not any(ln.startswith("msgid ") for ln in lines):
            continue
        msgid = _joined(lines, "msgid ")
        if msgid == "":
            continue  # the header
        if any(ln.startswith("#,") and "fuzzy" in ln for ln in lines):
            problems.append(f"fuzzy: {msgid!r}")
            continue
        strs = [_joined(lines, p) for p in ("msgstr ", "msgstr[0] ") if _has(lines, p)]
        if not strs or not all(strs):
            problems.append(f"untranslated: {msgid!r}")
    return problems


def permission_labels() -> list[str]:
    """Each permission as the group and user pages list it in zh-Hant: "app | model | name".

    The name is data: Django stores it in English when it creates the permission at migrate
    ("Can add access log", or a model's Meta.permissions text) and never translates it. The
    app and model parts are whatever the reader's language gives them.
    """
    from django.contrib.auth.models import Permission
    from django.utils import translation

    permissions = Permission.objects.select_related("content_type")
    with translation.override("zh-hant"):
        return [str(permission) for permission in permissions]


def _has(lines: list[str], prefix: str) -> bool:
    return any(ln.startswith(prefix) for ln in lines)


def _joined(lines: list[str], prefix: str) -> str:
    out: list[str] = []
    taking = False
    for ln in lines:
        if ln.startswith(prefix):
            taking = True
            out.append(ln[len(prefix) :].strip().strip('"'))
        elif taking and ln.startswith('"'):
            out.append(ln.strip('"'))
        else:
            taking = False
    return "".join(out)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.chunks: list[str] = []

    def _hidden(self) -> bool:
        return any(skip for _, skip in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        lang = (values.get("lang") or "").lower()
        skip = tag in _SKIP_TAGS or lang.startswith("en")
        if not self._hidden() and not skip:
            for name in _SHOWN_ATTRS:
                if values.get(name):
                    self.chunks.append(str(values[name]))
            if (
                tag == "input"
                and values.get("type") in ("submit", "button")
                and values.get("value")
            ):
                self.chunks.append(str(values["value"]))
        if tag not in _VOID:
            self.stack.append((tag, skip))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if not self._hidden() and data.strip():
            self.chunks.append(data.strip())


def page_text(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return parser.chunks


def english_in(html: str, data: Iterable[str] = ()) -> list[str]:
    """The text chunks of the page that still hold English words.

    `data` are names people typed (segments, recipients, venues, integrations): shown as typed.
    """
    phrases = sorted((d for d in data if d), key=len, reverse=True)
    found: list[str] = []
    for chunk in page_text(html):
        if chunk[:1] in '{["' or chunk.startswith('"'):
            continue  # JSON: an audit event's recorded data, shown as recorded
        text = chunk
        for phrase in phrases:
            text = text.replace(phrase, " ")
        for pattern in ALLOWED_PATTERNS:
            text = pattern.sub(" ", text)
        if [w for w in _WORD.findall(text) if w not in ALLOWED_WORDS]:
            found.append(chunk[:120])
    return found
