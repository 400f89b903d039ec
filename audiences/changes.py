"""Who hears that what decides who a segment reaches is about to change, and when it has.

Notices bind their approvals to each segment's full definition (the segment, its members, the
tags, districts and venues it names); notices reads audiences, so audiences cannot call it.
Instead every audiences service that changes a definition brackets the change:

    done = audience_changing(segments_using(obj))
    ...the change...
    done({"model": ..., "id": ..., "change": ...})

and the notices app registers a listener in its ready() (notices.requeue.watch_segments).
A listener is called with the segment ids before the change (so it can find who uses a segment
that is about to be deleted) and returns the function to call, in the same transaction, after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db.models import Model, Q

from audiences.models import Recipient, Segment, SegmentMember, Tag, Venue

Cause = dict[str, object]
Finish = Callable[[Cause], None]
Listener = Callable[[set[int]], Finish]

_LISTENERS: list[Listener] = []


def register_listener(listener: Listener) -> None:
    """Hear of every change to a segment definition (call from the listening app's ready())."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def audience_changing(segment_ids: Iterable[int]) -> Finish:
    """Tell the listeners the segments are about to change; call the result once they have."""
    ids = set(segment_ids)
    finishers = [listener(ids) for listener in _LISTENERS] if ids else []

    def done(cause: Cause) -> None:
        for finish in finishers:
            finish(cause)

    return done


def segments_using(obj: Model) -> set[int]:
    """The ids of the segments whose definition names `obj` (a segment names itself; a venue is
    also in every radius rule of its department, where moving it may bring it into the circle;
    a recipient is in the static lists that hold them)."""
    if isinstance(obj, Segment):
        return {obj.pk} if obj.pk else set()
    if isinstance(obj, SegmentMember):
        return {obj.segment_id}
    if isinstance(obj, Tag):
        return _ids(Segment.tags.through.objects.filter(tag_id=obj.pk))
    if isinstance(obj, Venue):
        near = Q(department_id=obj.department_id, venue_rule=True, radius_m__isnull=False)
        if obj.pk:
            near |= Q(venues=obj.pk)
        return set(Segment.objects.filter(near).values_list("pk", flat=True).distinct())
    if isinstance(obj, Recipient):
        return _ids(SegmentMember.objects.filter(recipient_id=obj.pk))
    return set()


def _ids(rows: object) -> set[int]:
    return set(rows.values_list("segment_id", flat=True))  # type: ignore[attr-defined]
