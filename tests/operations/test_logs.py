"""JSON logs: one object a line with the request/user/task ids, and no personal data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from celery.signals import task_prerun

from delivery.testing import make_notice
from notices.models import Status
from operations.logs import ContextFilter, JsonFormatter, mask


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    old_level = root.level
    request_logger = logging.getLogger("portal.request")
    old_request_level = request_logger.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    request_logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        request_logger.setLevel(old_request_level)


def parsed(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.django_db
def test_a_request_line_carries_the_request_and_user_ids_and_no_path(
    json_lines, cast_a, verified_client
) -> None:
    client = verified_client(cast_a.pr_officer)
    response = client.get("/notices/?q=+852 9123 4567")
    lines = [e for e in parsed(json_lines) if e["logger"] == "portal.request"]
    assert lines, json_lines.getvalue()
    line = lines[-1]
    assert line["request_id"] == response["X-Request-ID"]
    assert line["user_id"] == str(cast_a.pr_officer.pk)
    assert line["view"] == "notices:list"
    assert line["status"] == response.status_code
    assert "9123" not in json_lines.getvalue()
    assert "/notices/" not in json_lines.getvalue()


def test_mobile_numbers_in_a_message_are_masked(json_lines) -> None:
    logging.getLogger("delivery.test").warning("call for %s and 61234567 failed", "+852 9123-4567")
    (line,) = parsed(json_lines)
    assert line["message"] == "call for ***67 and ***67 failed"
    assert line["level"] == "WARNING"
    assert mask("notice 42 batch 7") == "notice 42 batch 7"


@pytest.mark.django_db
def test_a_tasks_lines_carry_its_task_id_and_the_notice_id_it_was_given(json_lines, cast_a) -> None:
    from delivery.tasks import plan_notice_task

    notice = make_notice(cast_a.department, status=Status.DRAFT)

    def log_start(**_kwargs: object) -> None:
        logging.getLogger("delivery.test").info("task started")

    task_prerun.connect(log_start, weak=False)
    try:
        result = plan_notice_task.apply(args=(notice.pk,))
    finally:
        task_prerun.disconnect(log_start)
    started = [e for e in parsed(json_lines) if e["message"] == "task started"]
    assert started, json_lines.getvalue()
    assert started[0]["task_id"] == result.id
    assert started[0]["notice_id"] == str(notice.pk)
    assert started[0]["task"] == "delivery.plan_notice"
    after = logging.getLogger("delivery.test")
    after.info("after the task")
    assert "task_id" not in parsed(json_lines)[-1]
