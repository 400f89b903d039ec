"""Background work: polling the Observatory's warning summary and forgetting old signatures."""

from __future__ import annotations

import logging

import requests
from celery import shared_task

from integrations import enqueue
from integrations.observatory import FeedError, fetch_warnsum
from integrations.services import observatory_warnings, signing

logger = logging.getLogger(__name__)


@shared_task(
    name=enqueue.POLL_WARNSUM,
    queue=enqueue.POLL_WARNSUM_QUEUE,
    # One poll must finish well before the next (every 15 s at the shortest).
    soft_time_limit=12,
    time_limit=14,
    ignore_result=True,
)
def poll_warnsum_task() -> int:
    """Fetch warnsum in English and Chinese and prepare the mapped notices; returns how many.

    No retry: the next poll comes within the poll interval, and each warning's unique key
    makes a second poll of the same state a no-op.
    """
    try:
        with requests.Session() as session:
            english = fetch_warnsum("en", session=session)
            chinese = fetch_warnsum("tc", session=session)
    except (requests.RequestException, FeedError) as exc:
        logger.warning("Observatory warnsum poll failed: %s", exc)
        return 0
    return len(observatory_warnings.warnings_ingest(english=english, chinese=chinese))


@shared_task(name=enqueue.PURGE_NONCES, queue=enqueue.PURGE_NONCES_QUEUE, ignore_result=True)
def purge_nonces_task() -> int:
    """Delete replay-cache rows and rate windows older than any signature could still be."""
    return signing.seen_signatures_purge()
