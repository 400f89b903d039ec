"""Simulator configuration: apps, limits, faults and simulated readers.

Demo apps (one per department, all with deterministic credentials so demos and tests can
log in without setup):

====  ================  =================  ========  ============
code  app_key           app_secret         agent_id  edition
====  ================  =================  ========  ============
HKO   ding-demo-hko     demo-secret-hko    3000101   professional
FEHD  ding-demo-fehd    demo-secret-fehd   3000102   standard
WSD   ding-demo-wsd     demo-secret-wsd    3000103   standard
CHP   ding-demo-chp     demo-secret-chp    3000104   standard
FSD   ding-demo-fsd     demo-secret-fsd    3000105   standard
DSD   ding-demo-dsd     demo-secret-dsd    3000106   standard
TD    ding-demo-td      demo-secret-td     3000107   standard
HAD   ding-demo-had     demo-secret-had    3000108   standard
====  ================  =================  ========  ============

Each app is its own organisation (corp id ``ding-corp-<code>``) with its own directory.
Event-push credentials: token ``demo-token-<code>``, aes_key from :func:`demo_aes_key`,
owner key = app_key.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any


class Edition(enum.StrEnum):
    """A DingTalk app's edition; it sets the monthly quota of metered calls."""

    STANDARD = "standard"
    PROFESSIONAL = "professional"


class IpBanStyle(enum.StrEnum):
    """How a banned IP is answered: an HTML page, or ``{"status": 1111, ...}``."""

    HTML = "html"
    JSON = "json"


class FaultKind(enum.StrEnum):
    """The faults a test may inject (see :func:`dingtalk.simulator.faults.inject`)."""

    ERRCODE = "errcode"
    HTTP_500 = "http_500"
    TIMEOUT = "timeout"  # processed, but the answer is held for faults.timeout_hold_s
    HTML_BAN = "html_ban"
    STATUS_1111 = "status_1111"
    NON_JSON = "non_json"


EDITION_QUOTAS: dict[str, int] = {Edition.STANDARD: 5_000, Edition.PROFESSIONAL: 200_000}

DEMO_DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("HKO", "Hong Kong Observatory", "香港天文台"),
    ("FEHD", "Food and Environmental Hygiene Department", "食物環境衞生署"),
    ("WSD", "Water Supplies Department", "水務署"),
    ("CHP", "Centre for Health Protection", "衞生防護中心"),
    ("FSD", "Fire Services Department", "消防處"),
    ("DSD", "Drainage Services Department", "渠務署"),
    ("TD", "Transport Department", "運輸署"),
    ("HAD", "Home Affairs Department", "民政事務總署"),
)


def demo_aes_key(code: str) -> str:
    """43-character base64 key, deterministic per department code."""
    digest = hashlib.sha256(f"demo-aes-{code.lower()}".encode()).digest()
    return base64.b64encode(digest).decode()[:43]


@dataclass
class AppConfig:
    app_key: str
    app_secret: str
    agent_id: int
    code: str = "APP"
    name: str = "Demo app"
    name_tc: str = "示範應用"
    edition: str = Edition.STANDARD
    corp_id: str = ""
    callback_url: str | None = None
    callback_token: str = "demo-token"  # noqa: S105 - demo credential, documented
    callback_aes_key: str = field(default_factory=lambda: demo_aes_key("app"))
    # None = every IP allowed; otherwise calls from other IPs get 60020.
    ip_whitelist: list[str] | None = None
    # APIs the app may call; None = all. Others get 60011 (88/60011 on topapi paths).
    permissions: list[str] | None = None
    # The Service Window's (互动服务窗) account id, the ``unionid`` of its mass-send calls.
    service_account_id: str = ""

    def __post_init__(self) -> None:
        if self.edition not in EDITION_QUOTAS:
            raise ValueError(f"edition must be one of {sorted(map(str, EDITION_QUOTAS))}")
        if not self.corp_id:
            self.corp_id = f"ding-corp-{self.code.lower()}"
        if not self.service_account_id:
            self.service_account_id = f"sa-{self.code.lower()}"


def demo_apps() -> list[AppConfig]:
    return [
        AppConfig(
            app_key=f"ding-demo-{code.lower()}",
            app_secret=f"demo-secret-{code.lower()}",
            agent_id=3000101 + i,
            code=code,
            name=name,
            name_tc=name_tc,
            edition=Edition.PROFESSIONAL if code == "HKO" else Edition.STANDARD,
            callback_token=f"demo-token-{code.lower()}",
            callback_aes_key=demo_aes_key(code),
        )
        for i, (code, name, name_tc) in enumerate(DEMO_DEPARTMENTS)
    ]


def extra_apps(count: int) -> list[AppConfig]:
    """More standard-edition apps after the demo ones (codes S01, S02...), for load benches
    where many departments each send through their own app (bench/storm.py)."""
    apps = []
    for i in range(count):
        code = f"S{i + 1:02d}"
        apps.append(
            AppConfig(
                app_key=f"ding-demo-{code.lower()}",
                app_secret=f"demo-secret-{code.lower()}",
                agent_id=3000201 + i,
                code=code,
                name=f"Storm department {i + 1}",
                name_tc=f"風暴部門 {i + 1}",
                edition=Edition.STANDARD,
                callback_token=f"demo-token-{code.lower()}",
                callback_aes_key=demo_aes_key(code),
            )
        )
    return apps


@dataclass
class Limits:
    """Every documented limit in one place. ``enabled=False`` switches all of them off;
    ``None`` switches off a single one."""

    enabled: bool = True
    token_lifetime_s: int = 7200  # not switched off by enabled=False: tokens always expire
    max_userids_per_call: int | None = 100
    max_depts_per_call: int | None = 20
    max_msg_bytes: int | None = 2048
    per_app_api_calls_per_s: int | None = 20
    ip_calls_per_window: int | None = 10_000
    ip_window_s: float = 20.0
    ip_ban_s: float = 300.0
    # "html" answers a banned IP with an HTML page, "json" with {"status":1111,...}.
    ip_ban_style: str = IpBanStyle.HTML
    # Metered calls per month by edition (§9); directory calls and gettoken are exempt.
    monthly_quotas: dict[str, int] | None = field(default_factory=lambda: dict(EDITION_QUOTAS))
    recipients_per_minute: int | None = 5_000
    same_content_once_per_day: bool = True
    per_user_daily_cap: int | None = 500
    to_all_user_per_day: int | None = 3
    max_reach_per_call: int | None = 5_000
    result_max_recipients: int | None = 100
    result_window_s: float | None = 86_400.0
    recall_window_s: float | None = 86_400.0
    # The reference gives 7 days (header) and 24 h (field note); the stricter one is used.
    progress_window_s: float | None = 86_400.0
    status_bar_window_s: float | None = 7 * 86_400.0
    # Service Window mass send (§8.1): all-follower and department sends reach at most this
    # many people (else the task does not run); each list at most 1,000 ids (legacy API).
    service_window_cap: int | None = 100_000
    service_window_max_list: int | None = 1_000

    def get(self, name: str) -> Any:
        """A limit's value, or None/False when limits are switched off."""
        value = getattr(self, name)
        if self.enabled or name.startswith(("ip_window", "ip_ban", "token_")):
            return value
        return False if isinstance(value, bool) else None


@dataclass
class Faults:
    """Randomised fault injection; applied to DingTalk API paths, never to /_sim/."""

    error_rate: float = 0.0  # share answered with an errcode drawn from error_codes
    error_codes: list[int] = field(default_factory=lambda: [-1])
    busy_rate: float = 0.0  # share answered with -1 "system busy"
    global_throttle_rate: float = 0.0  # share answered with 90002
    http_5xx_rate: float = 0.0
    timeout_rate: float = 0.0  # processed, but the answer is held for timeout_hold_s
    timeout_hold_s: float = 30.0
    latency_s: float = 0.0  # real seconds added to every answer
    failed_share: float = 0.0  # share of delivered recipients reported in failed_user_id_list


@dataclass
class ReaderConfig:
    enabled: bool = True
    median_s: float = 192.0  # 3.2 minutes of simulated time
    sigma: float = 1.0  # log-normal shape
    never_read_share: float = 0.15


@dataclass
class SimulatorConfig:
    apps: list[AppConfig] = field(default_factory=demo_apps)
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)
    readers: ReaderConfig = field(default_factory=ReaderConfig)
    directory_size: int = 2_000  # users per app
    followers_size: int = 20  # Service Window followers per app (fan-<code>-0001...)
    directory_seed: int = 852
    directory_file: str | None = None  # JSON seed file, see dingtalk.simulator.directory
    start_time: float | None = None
    time_scale: float = 1.0
    record_requests: bool = True
    request_log_size: int = 5_000
    delivery_rate_per_s: float = 5_000.0  # simulated recipients processed per second per task
    seed: int = 852
    callback_timeout_s: float = 2.5

    @classmethod
    def build(cls, **options: Any) -> SimulatorConfig:
        """Like the constructor, but also accepts ``limits=False`` / ``limits="off"`` and dicts."""
        limits = options.get("limits")
        if limits is False or limits == "off":
            options["limits"] = Limits(enabled=False)
        elif isinstance(limits, dict):
            options["limits"] = Limits(**limits)
        for key, kind in (("faults", Faults), ("readers", ReaderConfig)):
            if isinstance(options.get(key), dict):
                options[key] = kind(**options[key])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(options) - names
        if unknown:
            raise TypeError(f"unknown simulator options: {sorted(unknown)}")
        return cls(**options)
