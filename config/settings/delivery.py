"""Delivery settings: the rate governor's store and limits, the receipt schedule's beat entries.

The limits sit just under DingTalk's documented ones (dingtalk-api.md §2.2, §9) because an
overshoot is silent: DingTalk still answers success and drops the people over the limit.
"""

from __future__ import annotations

from config.env import env_int, env_str
from config.settings.celery import Queues

# "redis://..." for the shared Redis governor; "db" for the database fallback (the embedded
# default). Empty: Redis when the Celery broker is Redis, else the database.
DELIVERY_GOVERNOR_URL = env_str("DELIVERY_GOVERNOR_URL", "")
DELIVERY_GOVERNOR_PREFIX = env_str("DELIVERY_GOVERNOR_PREFIX", "portal:governor:")
# Simulated seconds per real second (a sped-up simulator clock in benchmarks); windows shrink.
DELIVERY_GOVERNOR_TIME_SCALE = float(env_str("DELIVERY_GOVERNOR_TIME_SCALE", "1"))
DELIVERY_LIMITS: dict[str, float] = {
    "calls_per_second": env_int("DELIVERY_CALLS_PER_SECOND", 18),  # DingTalk: 20 per API
    # Real seconds added to that second: a granted call reaches DingTalk a little late (not
    # scaled with a sped-up clock, where DingTalk's second is a few hundredths of ours).
    "call_window_margin_s": float(env_str("DELIVERY_CALL_WINDOW_MARGIN_S", "0.05")),
    "ip_calls_per_window": env_int("DELIVERY_IP_CALLS_PER_WINDOW", 8_000),  # DingTalk: 10,000/20 s
    "ip_window_s": 20.0,
    "recipients_per_minute": env_int("DELIVERY_RECIPIENTS_PER_MINUTE", 4_900),  # DingTalk: 5,000
    # Half a second longer than DingTalk's minute: a call reaches DingTalk a little after the
    # governor granted it, so DingTalk's window must have let go of a call before ours does.
    "recipients_window_s": float(env_str("DELIVERY_RECIPIENTS_WINDOW_S", "60.5")),
    "per_person_daily": 450,  # DingTalk: 500 notices a person a day
    # People one call reaches (DingTalk: 5,000 for an internal app): a larger organisation is
    # never sent to with one to_all_user call (delivery.reach).
    "max_reach_per_call": env_int("DELIVERY_MAX_REACH_PER_CALL", 5_000),
    # People an urgent send may use above recipients_per_minute (up to DingTalk's 5,000), so an
    # urgent notice approved while bulk sends fill the minute makes its first calls at once.
    "urgent_reserve": env_int("DELIVERY_URGENT_RESERVE", 100),
}
# Chunk of recipients snapshotted per transaction; the first batches go out after the first chunk.
DELIVERY_SNAPSHOT_CHUNK = env_int("DELIVERY_SNAPSHOT_CHUNK", 10_000)
DELIVERY_SNAPSHOT_FIRST_CHUNK = env_int("DELIVERY_SNAPSHOT_FIRST_CHUNK", 500)
# Most batches per send task (one claim, one commit per flush for tens of DingTalk calls);
# under DingTalk's own limits a task takes 20, about a second's calls (services.send_group_size).
DELIVERY_SEND_GROUP = env_int("DELIVERY_SEND_GROUP", 50)
# A snapshot of at least this many people refreshes the query planner's statistics.
DELIVERY_ANALYZE_AFTER = env_int("DELIVERY_ANALYZE_AFTER", 50_000)
# Batches per receipt-poll task (their people's states are written in one transaction).
DELIVERY_RECEIPT_GROUP = env_int("DELIVERY_RECEIPT_GROUP", 50)
# The longest governor wait a task sleeps through; longer waits go back to the broker with a
# countdown, so a paced send never holds a worker another department's notice needs.
DELIVERY_INLINE_WAIT_S = float(env_str("DELIVERY_INLINE_WAIT_S", "2"))
# How long a send task keeps trying to write accepted calls while the database is unreachable
# (their DingTalk task ids exist only in the task until then); below CELERY_TASK_SOFT_TIME_LIMIT.
DELIVERY_ACCEPT_WRITE_S = float(env_str("DELIVERY_ACCEPT_WRITE_S", "120"))
# Accepted calls are written at least this often (seconds) while a group is being sent.
DELIVERY_FLUSH_S = float(env_str("DELIVERY_FLUSH_S", "0.5"))
# Age after which a notice attachment is uploaded to DingTalk again before it is sent. DingTalk's
# media page says media ids do not expire (dingtalk-api.md §5); this is a safety margin costing
# one metered call per media notice (see delivery.media).
DELIVERY_MEDIA_MAX_AGE_S = env_int("DELIVERY_MEDIA_MAX_AGE_S", 3 * 86_400)
# Department-wide sends rely on the last directory sync (who sits in which department): older
# than this, a citywide notice goes out in user batches instead (see delivery.deptwide).
DELIVERY_DEPT_WIDE_MAX_SYNC_AGE_S = env_int("DELIVERY_DEPT_WIDE_MAX_SYNC_AGE_S", 86_400)
# Seconds DingTalk's clock runs ahead of ours, for its calendar day (the same-content rule that
# makes resending an unknown outcome safe). 0 in production; a drill or test sets it to bring
# DingTalk's midnight within reach.
DELIVERY_DINGTALK_CLOCK_OFFSET_S = float(env_str("DELIVERY_DINGTALK_CLOCK_OFFSET_S", "0"))
# A batch claimed longer ago than this lost its worker mid-call: its outcome is unknown.
DELIVERY_CLAIM_STALE_S = float(env_str("DELIVERY_CLAIM_STALE_S", "60"))
# A batch still queued this long after creation lost its broker message: enqueue it again.
DELIVERY_QUEUED_STALE_S = float(env_str("DELIVERY_QUEUED_STALE_S", "30"))
# Longest countdown a retry may use: far below the broker's visibility timeout (3600 s).
DELIVERY_MAX_COUNTDOWN_S = env_int("DELIVERY_MAX_COUNTDOWN_S", 300)
# Seconds the dashboard's figures of a plan are shared by everyone watching it (0: computed
# for every poll). Pages poll every 2 s: with many staff watching on a storm day, one
# computation a second serves them all (delivery.selectors.dashboard_figures).
DELIVERY_DASHBOARD_CACHE_S = env_int("DELIVERY_DASHBOARD_CACHE_S", 1)

DELIVERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "delivery-sweep": {
        "task": "delivery.sweep_dispatches",
        "schedule": 30.0,
        "options": {"queue": Queues.URGENT},
    },
    "delivery-receipts": {
        "task": "delivery.poll_receipts",
        "schedule": 30.0,
        "options": {"queue": Queues.RECEIPTS},
    },
    "delivery-reminders": {
        "task": "delivery.send_reminders",
        "schedule": 60.0,
        "options": {"queue": Queues.SEND},
    },
}
