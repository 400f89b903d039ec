"""The delivery engine's stages, one module each; callers import the stage they need by name.

planner -> outbox (outbox_pg) -> sender -> outcomes -> receipts -> followup, with lifecycle
(pause, resume, finish) and the sweeper beside them. delivery/README.md walks the path.

Rules that make "ran twice, sent once" hold:

- every status moves by a conditional UPDATE (``filter(pk=..., status=X).update(status=Y)``)
  and work continues only when exactly one row changed;
- the per-recipient rows and batches are the outbox: they are committed before any send is
  enqueued, and the sweeper re-enqueues whatever a lost message or a dead worker left behind;
- no transaction is open across a DingTalk call: a batch is claimed (commit), sent, and the
  outcome written (commit);
- a call whose outcome is ambiguous (read timeout, dropped connection, a worker killed during
  the call) marks its batch ``unknown``; it is resent with identical content, and DingTalk's
  duplicate-content drop (143106) in the resend's result shows who already had it.
"""
