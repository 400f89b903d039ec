"""The SQL that keeps each plan's rollups (delivery_plantally) in step with its people.

Database triggers write them, so every statement that changes people's rows or a batch's
status (sender outcomes, receipt polls, reminders, confirmations, recall, erasure, retention,
flow-control re-sends, and any later code) adds its deltas inside the same statement and
transaction. The tally is a ledger: triggers only INSERT signed deltas, never update a
shared counter, so concurrent writers neither wait for each other nor deadlock;
``delivery.rollups.compact`` folds a plan's deltas into one row per key now and then.

- PostgreSQL: statement-level triggers with transition tables, one grouped INSERT per
  statement (a snapshot chunk of 10,000 people adds a few dozen rows, not 10,000).
- SQLite: row-level triggers (one writer at a time; used by tests and development).

The same ``contributions`` SQL is used by the triggers and by the recount that checks them
(``delivery.rollups.plan_drift``), so the two cannot define a figure differently.

Kinds (``PlanTally.kind``) and their keys:
  s  effective state (a queued person in an accepted batch counts as accepted)
  d  district id ("-" for none): people        dr  the same, people who have read
  f  "state:code" of failed / invalid / forbidden people
  m  Unix minute of the first read               c   confirmed       o  on the outreach list
  l  seconds from acceptance to first read (sum) ln  how many people that sum covers
  q  batch id: people whose own row is queued in that batch (moves them when it is accepted)
  b  batch status: batches of the plan in that status
"""

from __future__ import annotations

TALLY = "delivery_plantally"
DELIVERY = "delivery_delivery"
BATCH = "delivery_batch"
DISPATCH = "delivery_dispatch"
FAILED = "('failed', 'invalid', 'forbidden')"
TRACKED = (  # the columns a rollup reads (SQLite's update trigger fires on these only)
    "plan_id",
    "batch_id",
    "state",
    "code",
    "district_id",
    "first_read_at",
    "accepted_at",
    "confirmed_at",
    "outreach",
)
TRIGGER_NAMES = (
    "delivery_tally_ins",
    "delivery_tally_upd",
    "delivery_tally_del",
    "batch_tally_ins",
    "batch_tally_upd",
    "batch_tally_del",
)


def _epoch(expr: str, vendor: str) -> str:
    if vendor == "postgresql":
        return f"CAST(floor(extract(epoch FROM {expr})) AS bigint)"
    # Not strftime('%s'): the recount binds parameters, where Django reads %s as a placeholder.
    return f"CAST(round((julianday({expr}) - 2440587.5) * 86400) AS INTEGER)"


def contributions(src: str, vendor: str) -> str:
    """Grouped signed deltas of the people in `src` (FROM-clause text) for the tally.

    `src` yields: sign, plan_id, batch_id, estate, state, code, district_id, first_read_at,
    acc_at, confirmed_at, outreach.
    """
    minute = f"CAST({_epoch('first_read_at', vendor)} / 60 AS TEXT)"
    if vendor == "postgresql":
        minute = "CAST(floor(extract(epoch FROM first_read_at) / 60) AS bigint)::text"
        seconds = "greatest(0, CAST(floor(extract(epoch FROM first_read_at - acc_at)) AS bigint))"
    else:
        seconds = f"max(0, {_epoch('first_read_at', vendor)} - {_epoch('acc_at', vendor)})"
    district = "COALESCE(CAST(district_id AS TEXT), '-')"
    read = "first_read_at IS NOT NULL"
    timed = f"{read} AND acc_at IS NOT NULL"
    branches = [
        f"SELECT plan_id, 's' AS kind, estate AS key, sign AS n FROM {src}",
        f"SELECT plan_id, 'd', {district}, sign FROM {src}",
        f"SELECT plan_id, 'dr', {district}, sign FROM {src} WHERE {read}",
        f"SELECT plan_id, 'f', state || ':' || COALESCE(CAST(code AS TEXT), ''), sign "
        f"FROM {src} WHERE state IN {FAILED}",
        f"SELECT plan_id, 'm', {minute}, sign FROM {src} WHERE {read}",
        f"SELECT plan_id, 'c', '', sign FROM {src} WHERE confirmed_at IS NOT NULL",
        f"SELECT plan_id, 'o', '', sign FROM {src} WHERE outreach = 'open'",
        f"SELECT plan_id, 'l', '', sign * {seconds} FROM {src} WHERE {timed}",
        f"SELECT plan_id, 'ln', '', sign FROM {src} WHERE {timed}",
        f"SELECT plan_id, 'q', CAST(batch_id AS TEXT), sign FROM {src} "
        "WHERE state = 'queued' AND batch_id IS NOT NULL",
    ]
    union = " UNION ALL ".join(branches)
    return (
        f"SELECT plan_id, kind, key, SUM(n) AS n FROM ({union}) z "
        "GROUP BY plan_id, kind, key HAVING SUM(n) <> 0"
    )


def _people(rows: str, sign: int, alias: str = "x", batches: str = BATCH) -> str:
    """A person's tracked columns with their effective state, from `rows` joined to the batch."""
    return (
        f"SELECT {sign} AS sign, {alias}.plan_id, {alias}.batch_id, "
        f"CASE WHEN {alias}.state = 'queued' AND b.status = 'accepted' THEN 'accepted' "
        f"ELSE {alias}.state END AS estate, {alias}.state, {alias}.code, {alias}.district_id, "
        f"{alias}.first_read_at, COALESCE({alias}.accepted_at, b.accepted_at) AS acc_at, "
        f"{alias}.confirmed_at, {alias}.outreach "
        f"FROM {rows} LEFT JOIN {batches} b ON b.id = {alias}.batch_id"
    )


def recount_sql(vendor: str) -> tuple[str, str]:
    """One plan's rollups recomputed from its people and batches: (WITH prefix, SELECT).

    Every ``%s`` in them is the plan's id (bind it as many times as the text has them).
    """
    people = _people(f"{DELIVERY} x", 1) + " WHERE x.plan_id = %s"
    src = "r" if vendor == "postgresql" else f"({people}) r"
    body = contributions(src, vendor)
    batches = (
        f"SELECT d.plan_id, 'b' AS kind, bt.status AS key, COUNT(*) AS n FROM {BATCH} bt "
        f"JOIN {DISPATCH} d ON d.id = bt.dispatch_id WHERE d.plan_id = %s "
        "GROUP BY d.plan_id, bt.status"
    )
    prefix = f"WITH r AS ({people}) " if vendor == "postgresql" else ""
    return prefix, f"{body} UNION ALL {batches}"


# --- PostgreSQL --------------------------------------------------------------------------------


def _pg_function(name: str, body: str, *, hash_joins: bool = True) -> str:
    # Transition tables carry no statistics: PostgreSQL guesses a few hundred rows and picks
    # nested loops, pairing every row with every other (seconds for 5,000 rows). Inside these
    # functions only, hash joins: every join here is of the statement's rows to each other or
    # to the handful of batches they name (fetched first, by id).
    setting = "SET enable_nestloop = off " if hash_joins else ""
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
        f"{setting}AS $fn$ BEGIN {body}; RETURN NULL; END $fn$"
    )


def _their_batches(*tables: str) -> str:
    """A CTE `bs` of the batches the statement's people belong to, fetched by id (a few
    dozen for a receipt poll's thousands of people)."""
    ids = " UNION ".join(f"SELECT batch_id FROM {t} WHERE batch_id IS NOT NULL" for t in tables)
    return (
        f"bs AS MATERIALIZED (SELECT id, status, accepted_at FROM {BATCH} "
        f"WHERE id = ANY(ARRAY({ids})))"
    )


def _insert(select: str) -> str:
    return f"INSERT INTO {TALLY} (plan_id, kind, key, n) {select}"


def _pg_delivery() -> list[str]:
    # No join between the transition tables: they carry no statistics, and PostgreSQL would
    # pair every old row with every new one (9 s for 5,000 rows). Every old row counts -1 and
    # every new row +1; the grouping cancels whatever the statement did not change.
    body = contributions("r", "postgresql")
    # Inserts and deletes read one transition table: each person's batch by its primary key
    # (with _their_batches the first million-person snapshot ran twice as slow in two bench
    # runs; not isolated further).
    ins = f"WITH r AS ({_people('new_rows x', 1)}) " + _insert(body)
    dele = f"WITH r AS ({_people('old_rows x', -1)}) " + _insert(body)
    upd = (
        f"WITH {_their_batches('old_rows', 'new_rows')}, "
        f"r AS ({_people('old_rows x', -1, batches='bs')} UNION ALL "
        f"{_people('new_rows x', 1, batches='bs')}) " + _insert(body)
    )
    return [
        _pg_function("delivery_tally_ins_fn", ins, hash_joins=False),
        _pg_function("delivery_tally_del_fn", dele, hash_joins=False),
        _pg_function("delivery_tally_upd_fn", upd),
        f"CREATE TRIGGER delivery_tally_ins AFTER INSERT ON {DELIVERY} REFERENCING NEW TABLE "
        "AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION delivery_tally_ins_fn()",
        f"CREATE TRIGGER delivery_tally_del AFTER DELETE ON {DELIVERY} REFERENCING OLD TABLE "
        "AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION delivery_tally_del_fn()",
        f"CREATE TRIGGER delivery_tally_upd AFTER UPDATE ON {DELIVERY} REFERENCING OLD TABLE "
        "AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION delivery_tally_upd_fn()",
    ]


def _batch_moves(ch: str) -> str:
    """Status counts, and the queued people of batches that became (or stopped being) accepted."""
    moved = (
        f"SELECT ch.plan_id, (CASE WHEN ch.ns = 'accepted' THEN 1 ELSE -1 END) * COALESCE("
        f"(SELECT SUM(t.n) FROM {TALLY} t WHERE t.plan_id = ch.plan_id AND t.kind = 'q' "
        "AND t.key = CAST(ch.id AS TEXT)), 0) AS k "
        f"FROM {ch} WHERE (ch.os = 'accepted') <> (ch.ns = 'accepted')"
    )
    union = (
        f"SELECT plan_id, 'b' AS kind, os AS key, -1 AS n FROM {ch} "
        f"UNION ALL SELECT plan_id, 'b', ns, 1 FROM {ch} "
        f"UNION ALL SELECT plan_id, 's', 'accepted', k FROM ({moved}) a "
        f"UNION ALL SELECT plan_id, 's', 'queued', -k FROM ({moved}) a"
    )
    return _insert(
        f"SELECT plan_id, kind, key, SUM(n) FROM ({union}) z WHERE plan_id IS NOT NULL "
        "GROUP BY plan_id, kind, key HAVING SUM(n) <> 0"
    )


def _pg_batch() -> list[str]:
    def counted(rows: str, sign: int) -> str:
        return _insert(
            f"SELECT d.plan_id, 'b', x.status, {sign} * COUNT(*) FROM {rows} x "
            f"JOIN {DISPATCH} d ON d.id = x.dispatch_id GROUP BY d.plan_id, x.status"
        )

    # Each batch's change from its old row (-1) and new row (+1), grouped (no join between
    # the transition tables, see _pg_delivery): os/ns are its old and new status.
    upd = (
        "WITH ch AS (SELECT v.id, d.plan_id, MAX(v.status) FILTER (WHERE v.sign < 0) AS os, "
        "MAX(v.status) FILTER (WHERE v.sign > 0) AS ns FROM (SELECT -1 AS sign, id, "
        "dispatch_id, status FROM old_rows UNION ALL SELECT 1, id, dispatch_id, status "
        f"FROM new_rows) v JOIN {DISPATCH} d ON d.id = v.dispatch_id GROUP BY v.id, d.plan_id "
        "HAVING MAX(v.status) FILTER (WHERE v.sign < 0) IS DISTINCT FROM "
        "MAX(v.status) FILTER (WHERE v.sign > 0)) " + _batch_moves("ch")
    )
    return [
        _pg_function("batch_tally_ins_fn", counted("new_rows", 1)),
        _pg_function("batch_tally_del_fn", counted("old_rows", -1)),
        _pg_function("batch_tally_upd_fn", upd),
        f"CREATE TRIGGER batch_tally_ins AFTER INSERT ON {BATCH} REFERENCING NEW TABLE "
        "AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION batch_tally_ins_fn()",
        f"CREATE TRIGGER batch_tally_del AFTER DELETE ON {BATCH} REFERENCING OLD TABLE "
        "AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION batch_tally_del_fn()",
        f"CREATE TRIGGER batch_tally_upd AFTER UPDATE ON {BATCH} REFERENCING OLD TABLE "
        "AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION batch_tally_upd_fn()",
    ]


# --- SQLite ------------------------------------------------------------------------------------


def _sqlite_person(ref: str, sign: int) -> str:
    status = f"(SELECT status FROM {BATCH} WHERE id = {ref}.batch_id)"
    accepted = f"(SELECT accepted_at FROM {BATCH} WHERE id = {ref}.batch_id)"
    return (
        f"SELECT {sign} AS sign, {ref}.plan_id AS plan_id, {ref}.batch_id AS batch_id, "
        f"CASE WHEN {ref}.state = 'queued' AND {status} = 'accepted' THEN 'accepted' "
        f"ELSE {ref}.state END AS estate, {ref}.state AS state, {ref}.code AS code, "
        f"{ref}.district_id AS district_id, {ref}.first_read_at AS first_read_at, "
        f"COALESCE({ref}.accepted_at, {accepted}) AS acc_at, "
        f"{ref}.confirmed_at AS confirmed_at, {ref}.outreach AS outreach"
    )


def _sqlite_delivery() -> list[str]:
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in TRACKED)
    ins = contributions(f"({_sqlite_person('NEW', 1)}) r", "sqlite")
    dele = contributions(f"({_sqlite_person('OLD', -1)}) r", "sqlite")
    both = f"({_sqlite_person('OLD', -1)} UNION ALL {_sqlite_person('NEW', 1)}) r"
    upd = contributions(both, "sqlite")
    return [
        f"CREATE TRIGGER delivery_tally_ins AFTER INSERT ON {DELIVERY} FOR EACH ROW "
        f"BEGIN {_insert(ins)}; END",
        f"CREATE TRIGGER delivery_tally_del AFTER DELETE ON {DELIVERY} FOR EACH ROW "
        f"BEGIN {_insert(dele)}; END",
        f"CREATE TRIGGER delivery_tally_upd AFTER UPDATE ON {DELIVERY} FOR EACH ROW "
        f"WHEN {changed} BEGIN {_insert(upd)}; END",
    ]


def _sqlite_batch() -> list[str]:
    plan = f"(SELECT plan_id FROM {DISPATCH} WHERE id = {{ref}}.dispatch_id)"
    alive = "WHERE p IS NOT NULL"  # a flush may empty the dispatches first
    ch = (
        f"(SELECT NEW.id AS id, OLD.status AS os, NEW.status AS ns, "
        f"{plan.format(ref='NEW')} AS plan_id) ch"
    )
    return [
        f"CREATE TRIGGER batch_tally_ins AFTER INSERT ON {BATCH} FOR EACH ROW BEGIN "
        + _insert(
            f"SELECT p, 'b', NEW.status, 1 FROM (SELECT {plan.format(ref='NEW')} AS p) {alive}"
        )
        + "; END",
        f"CREATE TRIGGER batch_tally_del AFTER DELETE ON {BATCH} FOR EACH ROW BEGIN "
        + _insert(
            f"SELECT p, 'b', OLD.status, -1 FROM (SELECT {plan.format(ref='OLD')} AS p) {alive}"
        )
        + "; END",
        f"CREATE TRIGGER batch_tally_upd AFTER UPDATE OF status ON {BATCH} FOR EACH ROW "
        f"WHEN OLD.status IS NOT NEW.status BEGIN {_batch_moves(ch)}; END",
    ]


def install_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return _pg_delivery() + _pg_batch()
    return _sqlite_delivery() + _sqlite_batch()


def uninstall_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        statements = [f"DROP TRIGGER IF EXISTS {name} ON {DELIVERY}" for name in TRIGGER_NAMES[:3]]
        statements += [f"DROP TRIGGER IF EXISTS {name} ON {BATCH}" for name in TRIGGER_NAMES[3:]]
        return statements + [f"DROP FUNCTION IF EXISTS {name}_fn()" for name in TRIGGER_NAMES]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in TRIGGER_NAMES]
