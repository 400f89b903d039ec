"""Test and benchmark helpers: a local Observatory feed, recorded payloads, signed requests, CAP.

The feed is a real HTTP server on 127.0.0.1 in a background thread, so the poll task runs its
real `requests` code against it; nothing of ours is mocked.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

from django.utils import timezone

from accounts.models import Department
from integrations import crypto
from integrations.api_views import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from notices.models import MessageKind, NoticeTemplate, Tier

HK = dt.timezone(dt.timedelta(hours=8))

# Names and labels as the Observatory publishes them (hk-domain.md §2, GreenYun/hko-rust labels).
STATEMENTS: dict[str, tuple[str, str]] = {
    "WRAIN": ("Rainstorm Warning Signal", "暴雨警告信號"),
    "WTCSGNL": ("Tropical Cyclone Warning Signal", "熱帶氣旋警告信號"),
    "WTS": ("Thunderstorm Warning", "雷暴警告"),
    "WFIRE": ("Fire Danger Warning", "火災危險警告"),
}
SUBTYPES: dict[str, tuple[str, str, str]] = {
    "WRAINA": ("WRAIN", "Amber", "黃色"),
    "WRAINR": ("WRAIN", "Red", "紅色"),
    "WRAINB": ("WRAIN", "Black", "黑色"),
    "TC1": ("WTCSGNL", "Standby Signal No. 1", "一號戒備信號"),
    "TC3": ("WTCSGNL", "Strong Wind Signal No. 3", "三號強風信號"),
    "TC8NE": ("WTCSGNL", "No. 8 Northeast Gale or Storm Signal", "八號東北烈風或暴風信號"),
    "TC8SE": ("WTCSGNL", "No. 8 Southeast Gale or Storm Signal", "八號東南烈風或暴風信號"),
    "TC8SW": ("WTCSGNL", "No. 8 Southwest Gale or Storm Signal", "八號西南烈風或暴風信號"),
    "TC8NW": ("WTCSGNL", "No. 8 Northwest Gale or Storm Signal", "八號西北烈風或暴風信號"),
    "TC9": ("WTCSGNL", "Increasing Gale or Storm Signal No. 9", "九號烈風或暴風風力增強信號"),
    "TC10": ("WTCSGNL", "Hurricane Signal No. 10", "十號颶風信號"),
    "WFIREY": ("WFIRE", "Yellow", "黃色"),
    "WFIRER": ("WFIRE", "Red", "紅色"),
    "WTS": ("WTS", "", ""),
}


def hk_time(value: dt.datetime) -> str:
    """ISO 8601 with +08:00, seconds precision, as the Observatory writes it."""
    return value.astimezone(HK).replace(microsecond=0).isoformat()


def warnsum_entry(
    code: str,
    action: str = "ISSUE",
    *,
    issue_time: dt.datetime | None = None,
    update_time: dt.datetime | None = None,
    lang: str = "en",
) -> tuple[str, dict[str, str]]:
    """(statement, entry) for one warning, shaped like the recorded warnsum payloads."""
    statement, type_en, type_zh = SUBTYPES[code]
    name_en, name_zh = STATEMENTS[statement]
    issued = issue_time or timezone.now()
    entry = {
        "name": name_en if lang == "en" else name_zh,
        "code": code,
        "actionCode": action,
        "issueTime": hk_time(issued),
        "updateTime": hk_time(update_time or issued),
    }
    label = type_en if lang == "en" else type_zh
    if label:
        entry["type"] = label
    return statement, entry


def warnsum_payloads(
    *warnings: tuple[str, str, dt.datetime],
) -> dict[str, dict[str, Any]]:
    """{"en": {...}, "tc": {...}} for (code, action, issue_time) triples."""
    payloads: dict[str, dict[str, Any]] = {"en": {}, "tc": {}}
    for code, action, issued in warnings:
        for lang in ("en", "tc"):
            statement, entry = warnsum_entry(code, action, issue_time=issued, lang=lang)
            payloads[lang][statement] = entry
    return payloads


@dataclass
class LocalFeed:
    """A local stand-in for data.weather.gov.hk: serves whatever payloads were last set."""

    url: str
    payloads: dict[str, dict[str, Any]] = field(default_factory=lambda: {"en": {}, "tc": {}})
    requests: int = 0
    changed_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, payloads: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            self.payloads = json.loads(json.dumps(payloads))
            self.changed_at = time.perf_counter()

    def body(self, lang: str) -> bytes:
        with self._lock:
            self.requests += 1
            return json.dumps(self.payloads.get(lang, {}), ensure_ascii=False).encode()


@contextmanager
def local_feed(initial: dict[str, dict[str, Any]] | None = None) -> Iterator[LocalFeed]:
    """Serve warnsum on a free 127.0.0.1 port: GET /weather.php?dataType=warnsum&lang=en|tc."""
    feed = LocalFeed(url="")
    if initial is not None:
        feed.set(initial)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            if query.get("dataType") != ["warnsum"]:
                self.send_error(400, "dataType must be warnsum")
                return
            body = feed.body(query.get("lang", ["en"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="local-warnsum", daemon=True)
    thread.start()
    feed.url = f"http://127.0.0.1:{server.server_address[1]}/weatherAPI/opendata/weather.php"
    try:
        yield feed
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def signed_headers(
    secret: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    idempotency_key: str | None = None,
) -> dict[str, str]:
    """Headers for a signed request, as test-client keyword arguments (HTTP_... names)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        f"HTTP_{TIMESTAMP_HEADER.upper().replace('-', '_')}": stamp,
        f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}": crypto.sign(secret, stamp, body),
    }
    if idempotency_key is not None:
        headers[f"HTTP_{IDEMPOTENCY_HEADER.upper().replace('-', '_')}"] = idempotency_key
    return headers


@dataclass(frozen=True)
class CapInfoSpec:
    language: str
    event: str
    headline: str
    description: str
    instruction: str = ""
    areas: tuple[str, ...] = ()


def cap_alert_xml(
    *,
    identifier: str,
    sender: str = "alerts@example.gov.hk",
    msg_type: str = "Alert",
    status: str = "Actual",
    scope: str = "Public",
    references: str = "",
    infos: tuple[CapInfoSpec, ...] = (),
    sent: dt.datetime | None = None,
) -> bytes:
    """A CAP 1.2 document built as text, so tests can also write invalid ones on purpose."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">',
        f"<identifier>{escape(identifier)}</identifier>",
        f"<sender>{escape(sender)}</sender>",
        f"<sent>{hk_time(sent or timezone.now())}</sent>",
        f"<status>{status}</status>",
        f"<msgType>{msg_type}</msgType>",
        f"<scope>{scope}</scope>",
    ]
    if references:
        parts.append(f"<references>{escape(references)}</references>")
    for info in infos:
        parts += [
            "<info>",
            f"<language>{info.language}</language>",
            "<category>Met</category>",
            f"<event>{escape(info.event)}</event>",
            "<urgency>Immediate</urgency><severity>Severe</severity><certainty>Observed</certainty>",
            f"<headline>{escape(info.headline)}</headline>",
            f"<description>{escape(info.description)}</description>",
        ]
        if info.instruction:
            parts.append(f"<instruction>{escape(info.instruction)}</instruction>")
        parts += [f"<area><areaDesc>{escape(a)}</areaDesc></area>" for a in info.areas]
        parts.append("</info>")
    parts.append("</alert>")
    return "\n".join(parts).encode()


def cap_template(department: Department, *, code: str = "cap-alert") -> NoticeTemplate:
    """A bilingual template that takes a CAP alert as it is (headline, description, areas).

    Test data only: departments write their own CAP templates in the back office.
    """
    template, _ = NoticeTemplate.objects.get_or_create(
        department=department,
        code=code,
        defaults={
            "name": "CAP alert",
            "tier": Tier.CITYWIDE,
            "kind": MessageKind.MARKDOWN,
            "title_en": "{headline_en}",
            "title_zh": "{headline_zh}",
            "body_en": "{message_en}",
            "body_zh": "{message_zh}",
        },
    )
    return template
