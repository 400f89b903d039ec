"""gunicorn's configuration for the portal (deploy/systemd/portal-web.service runs it).

    gunicorn config.wsgi:application --config config/gunicorn.py

Every value can be changed from the environment file (deploy/portal.env.template).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", str(multiprocessing.cpu_count() * 2 + 1)))
threads = int(os.environ.get("WEB_THREADS", "1"))
# Long enough for the largest page (a million-person audit export streams, so it does not count).
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# A worker process is replaced after this many requests, with jitter so they do not all go at once.
max_requests = 2000
max_requests_jitter = 200
# Only the reverse proxy may say a request came over HTTPS (X-Forwarded-Proto).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Django writes one JSON line per request (config.settings.production); gunicorn's own access
# log would repeat it without the request id.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker process's live gauges from the shared metrics directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


# gunicorn's own lines (start, worker boots and exits) as JSON too, like the portal's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "operations.logs.JsonFormatter"}},
    "handlers": {
        "json": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["json"], "level": "INFO"},
    "loggers": {"gunicorn.error": {"handlers": ["json"], "level": "INFO", "propagate": False}},
}
