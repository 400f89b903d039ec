"""The Service Window (互动服务窗) mass send to a department's followers (§8.1), its recall and
its send records, and the failed event pushes a reconciling job fetches (§7.1).

```python
from dingtalk import service_window as sw
sent = sw.send(client, unionid, sw.text_body("..."), uuid="...", to_all=True)
sw.recall(client, sent.task_id)
sw.records(client, page=1, size=20)  # RecordsPage(records=[SendRecord...], has_more, total)
sw.failed_pushes(client)  # FailedPushes(entries=[{call_back_tag, event_time, event}], has_more)
```

A ``uuid`` makes a send idempotent: DingTalk refuses a second send with the same uuid with
``uuid.repeat`` (:class:`dingtalk.errors.UuidRepeated`), which means the first was accepted.
Allowed kinds: text, news_card, image, markdown, single_news_card, link, action_card; there is
no voice or file message on the Service Window. All-follower and department sends reach at
most 100,000 people; a send to several people delivers identical content once a day per person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dingtalk.client import DingTalkClient, error_for
from dingtalk.errors import InvalidRequest, MessageInvalid

SEND_PATH = "/v1.0/exclusive/follow/message/send"
RECORDS_PATH = "/v1.0/exclusive/follow/message/queryMsgSendRecords"
RECALL_PATH = "/topapi/message/mass/recall"
FAILED_PUSHES_PATH = "/call_back/get_call_back_failed_result"
MSG_TYPES = frozenset(
    {"text", "news_card", "image", "markdown", "single_news_card", "link", "action_card"}
)
MAX_LIST = 1_000  # ids per list (legacy API's documented bound)
MAX_PEOPLE = 100_000  # all-follower and department sends
RECALL_WINDOW_S = 24 * 3600
# Send-record statuses (the reference gives the range 0-4; the names are the simulator's).
STATUS_NAMES = {0: "waiting", 1: "sending", 2: "sent", 3: "failed", 4: "recalled"}


@dataclass(frozen=True, slots=True)
class Body:
    """One Service Window message: its ``msg_type`` and the fields that carry it."""

    msg_type: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SendAccepted:
    task_id: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class SendRecord:
    task_id: str
    uuid: str
    msg_type: str
    status: int
    sent_at_ms: int
    receivers: int

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, str(self.status))


@dataclass(frozen=True, slots=True)
class RecordsPage:
    records: list[SendRecord]
    has_more: bool
    total: int


@dataclass(frozen=True, slots=True)
class FailedPushes:
    entries: list[dict[str, Any]]
    has_more: bool


def text_body(content: str) -> Body:
    if not content.strip():
        raise MessageInvalid("text_content", "must not be empty")
    return Body("text", {"text_content": content})


def markdown_body(title: str, text: str) -> Body:
    return Body("markdown", {"msg_body": {"markdown": {"title": title, "text": text}}})


def from_work_message(msg: Mapping[str, Any]) -> Body:
    """The Service Window form of a work-notification message (text, markdown, link,
    action_card, image). Voice, file and OA messages have none: raises MessageInvalid."""
    kind = str(msg.get("msgtype"))
    part = msg.get(kind)
    if not isinstance(part, Mapping):
        raise MessageInvalid("msgtype", "message has no body")
    if kind == "text":
        return text_body(str(part.get("content", "")))
    if kind == "image":
        return Body("image", {"media_id": part.get("media_id")})
    if kind in ("markdown", "link", "action_card"):
        return Body(kind, {"msg_body": {kind: dict(part)}})
    raise MessageInvalid("msgtype", f"the Service Window carries no {kind} message")


def send(
    client: DingTalkClient,
    unionid: str,
    body: Body,
    *,
    uuid: str,
    userids: Sequence[str] = (),
    dept_ids: Sequence[int] = (),
    to_all: bool = False,
) -> SendAccepted:
    """One mass send. ``uuid`` is required here: every send of the portal must be idempotent."""
    if body.msg_type not in MSG_TYPES:
        raise MessageInvalid("msg_type", f"not a Service Window kind: {body.msg_type}")
    if not uuid:
        raise InvalidRequest("a uuid is required", api="follow_message_send")
    if len(userids) > MAX_LIST or len(dept_ids) > MAX_LIST:
        raise InvalidRequest(f"at most {MAX_LIST} ids per list", api="follow_message_send")
    if not to_all and not userids and not dept_ids:
        raise InvalidRequest("no recipients", api="follow_message_send")
    payload: dict[str, Any] = {
        "unionid": unionid,
        "is_to_all": bool(to_all),
        "msg_type": body.msg_type,
        "uuid": uuid,
        **body.fields,
    }
    if userids:
        payload["userid_list"] = list(userids)
    if dept_ids:
        payload["dep_id_list"] = [int(d) for d in dept_ids]
    answer = client.call_new_api(SEND_PATH, "follow_message_send", payload)
    rid = answer.get("requestid")
    return SendAccepted(str(answer["task_id"]), str(rid) if rid is not None else None)


def recall(client: DingTalkClient, task_id: str) -> None:
    """Withdraw a send of the last 24 hours."""
    client._call(RECALL_PATH, "mass_recall", {"task_id": str(task_id)})


def records(client: DingTalkClient, page: int = 1, size: int = 20) -> RecordsPage:
    answer = client.call_new_api(
        RECORDS_PATH, "query_send_records", {"pageNumber": page, "pageSize": size}
    )
    return RecordsPage(
        [
            SendRecord(
                str(r.get("taskId", "")),
                str(r.get("uuid", "")),
                str(r.get("msgType", "")),
                int(r.get("status", 0)),
                int(r.get("sendTime", 0)),
                int(r.get("receivers", 0)),
            )
            for r in answer.get("records") or []
        ],
        bool(answer.get("hasMore")),
        int(answer.get("totalCount", 0)),
    )


def record_for_uuid(client: DingTalkClient, uuid: str, pages: int = 5) -> SendRecord | None:
    """The send made with ``uuid``, searched in the newest ``pages`` pages of records."""
    for page in range(1, pages + 1):
        found = records(client, page, 100)
        for record in found.records:
            if record.uuid == uuid:
                return record
        if not found.has_more:
            break
    return None


def failed_pushes(client: DingTalkClient) -> FailedPushes:
    """Event pushes DingTalk gave up on (each handed out once, at most 200 a call)."""
    token = client.get_access_token()
    answer = client._http(
        "GET", FAILED_PUSHES_PATH, "get_call_back_failed_result", params={"access_token": token}
    )
    if answer.get("errcode", 0) != 0:
        raise error_for("get_call_back_failed_result", answer)
    return FailedPushes(list(answer.get("failed_list") or []), bool(answer.get("has_more")))
