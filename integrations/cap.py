"""CAP 1.2 alerts: parse safely, validate against the OASIS schema, read one info per language.

Untrusted XML is first parsed by defusedxml, which refuses any DTD (and so every entity
expansion, external entity and "billion laughs" bomb) before lxml ever sees the document;
lxml then parses it again with entities, DTDs and the network switched off, and validates it
against the vendored schema in integrations/schemas/CAP-v1.2.xsd.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException
from lxml import etree  # type: ignore[import-untyped]

from integrations.errors import TriggerRefused

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
_NS = {"cap": CAP_NS}
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "CAP-v1.2.xsd"


class CapStatus(StrEnum):
    """An alert's <status> (CAP 1.2 section 3.2.1); only Actual alerts act."""

    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class CapMsgType(StrEnum):
    """An alert's <msgType>; Alert and Update prepare a notice, Cancel withdraws one."""

    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class CapScope(StrEnum):
    """An alert's <scope>; only Public alerts act."""

    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


@functools.cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
    )


@dataclass(frozen=True)
class CapArea:
    description: str
    geocodes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CapInfo:
    language: str
    event: str
    headline: str
    description: str
    instruction: str
    sender_name: str
    urgency: str
    severity: str
    certainty: str
    effective: str
    expires: str
    web: str
    areas: tuple[CapArea, ...] = ()


@dataclass(frozen=True)
class CapAlert:
    identifier: str
    sender: str
    sent: str
    status: str
    msg_type: str
    scope: str
    references: tuple[tuple[str, str, str], ...] = ()
    infos: tuple[CapInfo, ...] = ()
    english: CapInfo | None = None
    chinese: CapInfo | None = None
    ignored_languages: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """CAP identifiers are unique per sender (CAP 1.2 section 3.2.1)."""
        return f"{self.sender} {self.identifier}"


def _text(element: etree._Element, path: str) -> str:
    found = element.find(path, _NS)
    return (found.text or "").strip() if found is not None else ""


def _language_group(language: str) -> str | None:
    tag = language.strip().lower()
    if tag == "en" or tag.startswith("en-"):
        return "en"
    if tag == "zh" or tag.startswith("zh-"):
        return "zh"
    return None


def _info(element: etree._Element) -> CapInfo:
    areas = tuple(
        CapArea(
            description=_text(area, "cap:areaDesc"),
            geocodes=tuple(
                (_text(code, "cap:valueName"), _text(code, "cap:value"))
                for code in area.findall("cap:geocode", _NS)
            ),
        )
        for area in element.findall("cap:area", _NS)
    )
    return CapInfo(
        language=_text(element, "cap:language") or "en-US",
        event=_text(element, "cap:event"),
        headline=_text(element, "cap:headline"),
        description=_text(element, "cap:description"),
        instruction=_text(element, "cap:instruction"),
        sender_name=_text(element, "cap:senderName"),
        urgency=_text(element, "cap:urgency"),
        severity=_text(element, "cap:severity"),
        certainty=_text(element, "cap:certainty"),
        effective=_text(element, "cap:effective"),
        expires=_text(element, "cap:expires"),
        web=_text(element, "cap:web"),
        areas=areas,
    )


def _references(text: str) -> tuple[tuple[str, str, str], ...]:
    # "sender,identifier,sent" triples separated by whitespace (CAP 1.2 section 3.2.1).
    triples = []
    for item in text.split():
        parts = item.split(",")
        if len(parts) != 3 or not all(parts):
            raise TriggerRefused(
                422,
                "cap_bad_references",
                f"The references element must hold sender,identifier,sent triples; got {item[:80]!r}.",
            )
        triples.append((parts[0], parts[1], parts[2]))
    return tuple(triples)


def parse_alert(body: bytes) -> CapAlert:
    """The alert in `body`, or TriggerRefused (400 unsafe/malformed XML, 422 not valid CAP 1.2)."""
    try:
        DefusedET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise TriggerRefused(
            400,
            "xml_forbidden",
            f"The document declares a DTD or entities, which are refused ({type(exc).__name__}).",
        ) from None
    except DefusedET.ParseError as exc:
        raise TriggerRefused(
            400, "xml_malformed", f"The document is not well-formed XML: {exc}."
        ) from None
    try:
        root = etree.fromstring(body, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise TriggerRefused(
            400, "xml_malformed", f"The document is not well-formed XML: {exc}."
        ) from None
    schema = _schema()
    if not schema.validate(root):
        first = schema.error_log.filter_from_errors()
        detail = first[0].message if first else "unknown error"
        raise TriggerRefused(422, "cap_invalid", f"The alert is not valid CAP 1.2: {detail}")
    infos = tuple(_info(element) for element in root.findall("cap:info", _NS))
    by_language: dict[str, CapInfo] = {}
    ignored = []
    for info in infos:
        group = _language_group(info.language)
        if group is None:
            ignored.append(info.language)
            continue
        if group in by_language:
            raise TriggerRefused(
                422,
                "cap_duplicate_language",
                f"The alert has more than one info block in {group} ({info.language}); send one per language.",
            )
        by_language[group] = info
    return CapAlert(
        identifier=_text(root, "cap:identifier"),
        sender=_text(root, "cap:sender"),
        sent=_text(root, "cap:sent"),
        status=_text(root, "cap:status"),
        msg_type=_text(root, "cap:msgType"),
        scope=_text(root, "cap:scope"),
        references=_references(_text(root, "cap:references")),
        infos=infos,
        english=by_language.get("en"),
        chinese=by_language.get("zh"),
        ignored_languages=tuple(ignored),
    )
