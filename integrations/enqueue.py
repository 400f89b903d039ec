"""The names and queues of integrations' Celery tasks, in one place.

Integrations' services queue no work themselves: both tasks run on beat's schedule
(config.settings.integrations, which names the same tasks and queues). tasks.py declares
them with these names and queues.
"""

from __future__ import annotations

from config.settings.celery import Queues

POLL_WARNSUM = "integrations.poll_warnsum"
PURGE_NONCES = "integrations.purge_nonces"

# A warning must reach its approvers quickly; forgetting old signatures can wait.
POLL_WARNSUM_QUEUE = Queues.URGENT
PURGE_NONCES_QUEUE = Queues.DEFAULT
