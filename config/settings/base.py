"""Settings shared by every environment. Environment-specific modules only override these."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from config.env import env_bool, env_int, env_list, env_secret, env_str

# Lets ModelAdmin[Model] and friends be subscripted at run time, as django-stubs types them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = False
SECRET_KEY = ""  # set by each environment module
ALLOWED_HOSTS: list[str] = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "config.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "config.apps.PortalTOTPConfig",  # django_otp.plugins.otp_totp, named and translated
    "guardian",
    "import_export",
    "config.apps.PortalAxesConfig",  # axes, named
    "csp",
    "pgtrigger",
    "common",
    "accounts",
    "audit",
    "audiences",
    "notices",
    "delivery",
    "integrations",
    "operations",
]

MIDDLEWARE = [
    "operations.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "operations.logs.LogContextMiddleware",
    "accounts.middleware.SessionLifetimeMiddleware",
    "accounts.middleware.RequireVerifiedStaffMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # axes last: it turns a lockout flagged during authenticate() into the lockout page
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "accounts.context_processors.staff_context",
            ],
        },
    },
]


def database_from_url(url: str) -> dict[str, object]:
    try:
        config = dict(dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
    if not config.get("ENGINE"):
        raise ImproperlyConfigured("DATABASE_URL names an unknown database scheme.")
    return config


def sqlite_database(path: Path) -> dict[str, object]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        # WAL plus IMMEDIATE transactions let the web app, worker and beat share one file
        # without "database is locked" errors on the embedded default.
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
    }


DATABASE_URL = env_str("DATABASE_URL", "")
DATABASES = {
    "default": database_from_url(DATABASE_URL)
    if DATABASE_URL
    else sqlite_database(VAR_DIR / "db.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # axes first: it refuses a locked-out username+IP before any password is checked
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "accounts:login"

# Sessions: idle timeout by re-saving the session as people use the portal (at most once a
# minute: accounts.middleware.SessionLifetimeMiddleware, so a dashboard polled every 2 s is not
# a database write every 2 s), absolute timeout in the same middleware.
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 30 * 60)
SESSION_SAVE_EVERY_REQUEST = False
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_ABSOLUTE_SECONDS = env_int("SESSION_ABSOLUTE_SECONDS", 10 * 60 * 60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
# A styled, translated page instead of Django's bare English one (common/error_views.py).
CSRF_FAILURE_VIEW = "common.error_views.csrf_failure"

# Login throttling: lock the username+IP pair, not the IP alone, because government
# offices sit behind shared NAT and an IP-only lock would shut out a whole department.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.lockout"
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = env_int("AXES_IPWARE_PROXY_COUNT", 0)

# django-otp: TOTP codes are throttled with an exponentially growing delay after failures.
OTP_TOTP_ISSUER = "HK Notice Portal"
OTP_TOTP_THROTTLE_FACTOR = 1

# django-guardian: department scope lives in direct foreign-key permission tables.
GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None
GUARDIAN_AUTO_PREFETCH = False

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hant", _("Traditional Chinese"))]
# Ours first (it wins); then the third-party apps' zh-Hant, which they do not ship (README).
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "locale_thirdparty"]
# Our overrides of Django's per-language formats (config/formats/<locale>/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = "Asia/Hong_Kong"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("PORTAL_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "/media/"

# Content Security Policy: no inline script without a nonce, no third-party origins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        # NONCE adds a per-response nonce whenever a template uses request.csp_nonce.
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"axes": {"level": "WARNING"}, "portal.request": {"level": "WARNING"}},
}

# Where the demo and training mode find the DingTalk simulator.
DINGTALK_BASE_URL = env_str("DINGTALK_BASE_URL", "http://127.0.0.1:8900")
DINGTALK_SECRETS_DIR = Path(env_str("DINGTALK_SECRETS_DIR", str(VAR_DIR / "secrets")))

PORTAL_DEMO_MODE = env_bool("PORTAL_DEMO_MODE", False)

# The portal's public address: every link in every DingTalk message (confirmations, the notice
# page, approver alerts, credential links) starts with it. `make run` starts the web app on
# PORT (bin/run-dev), so by default links follow that port.
PORT = env_int("PORT", 8000)
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", f"http://127.0.0.1:{PORT}").rstrip("/")

# /metrics answers a scraper showing this bearer token, or one connecting from these networks
# (CIDRs, comma-separated); with neither set it answers 404 to everyone.
METRICS_TOKEN = env_secret("METRICS_TOKEN", "")
METRICS_NETWORKS = env_list("METRICS_NETWORKS", [])

from config.settings.audiences import *  # noqa: E402
from config.settings.audit import *  # noqa: E402
from config.settings.audit import AUDIT_ANCHOR_FILE  # noqa: E402
from config.settings.celery import *  # noqa: E402
from config.settings.delivery import *  # noqa: E402
from config.settings.integrations import *  # noqa: E402
from config.settings.notices import *  # noqa: E402
from config.settings.operations import *  # noqa: E402

if not AUDIT_ANCHOR_FILE:
    AUDIT_ANCHOR_FILE = str(VAR_DIR / "audit" / "anchors.jsonl")

CELERY_BEAT_SCHEDULE = {
    **AUDIT_BEAT_SCHEDULE,
    **AUDIENCES_BEAT_SCHEDULE,
    **NOTICES_BEAT_SCHEDULE,
    **DELIVERY_BEAT_SCHEDULE,
    **INTEGRATIONS_BEAT_SCHEDULE,
    **OPERATIONS_BEAT_SCHEDULE,
}

# Credentials (accounts.credentials): how long a one-time enrolment link stays valid, and how
# long an approver whose credentials were reset may not approve.
ACCOUNTS_ENROLMENT_LINK_HOURS = env_int("ACCOUNTS_ENROLMENT_LINK_HOURS", 4)
ACCOUNTS_APPROVER_COOLING_OFF_HOURS = env_int("ACCOUNTS_APPROVER_COOLING_OFF_HOURS", 24)
