"""The client's raw requests, as recorded by the simulator, match the documented shapes."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from dingtalk import messages


def users(n, start=0):
    """Generated userids of the first demo app (hko0000000, hko0000001, ...)."""
    return [f"hko{i:07d}" for i in range(start, start + n)]


def form(recorded):
    assert recorded.headers["content-type"] == "application/x-www-form-urlencoded"
    return {k: v[0] for k, v in parse_qs(recorded.body.decode(), keep_blank_values=True).items()}


def only(dt, api):
    [recorded] = dt.sim.requests(api=api)
    return recorded


def test_gettoken_is_a_get_with_appkey_and_appsecret(dt, client):
    client.get_access_token()
    recorded = only(dt, "gettoken")
    assert (recorded.method, recorded.path) == ("GET", "/gettoken")
    assert recorded.query == {"appkey": dt.app_key, "appsecret": dt.app_secret}
    assert recorded.body == b""


def test_asyncsend_v2_is_form_encoded_with_msg_as_json_string(dt, client):
    msg = messages.markdown("Heat 酷熱", "**Very hot** weather")
    client.send(msg, userids=users(3), dept_ids=[100, 101])
    recorded = only(dt, "asyncsend_v2")
    assert (recorded.method, recorded.path) == (
        "POST",
        "/topapi/message/corpconversation/asyncsend_v2",
    )
    assert set(recorded.query) == {"access_token"}
    body = form(recorded)
    assert set(body) == {"agent_id", "userid_list", "dept_id_list", "msg"}
    assert body["agent_id"] == str(dt.agent_id)
    assert body["userid_list"] == "hko0000000,hko0000001,hko0000002"
    assert body["dept_id_list"] == "100,101"
    assert json.loads(body["msg"]) == msg
    assert "access_token" not in body


def test_to_all_user_is_the_string_true(dt, client):
    client.send(messages.text("all"), to_all_user=True)
    body = form(only(dt, "asyncsend_v2"))
    assert body["to_all_user"] == "true"
    assert "userid_list" not in body
    assert "dept_id_list" not in body


def test_tracking_calls_send_agent_id_and_task_id(dt, client):
    sent = client.send(
        messages.oa("https://a.example", "FFBBBBBB", title="t", status_value="x"), userids=users(1)
    )
    dt.sim.advance(1)
    client.get_send_progress(sent.task_id)
    client.get_send_result(sent.task_id)
    client.update_status_bar(sent.task_id, "done", "0xFF78C06E")
    client.recall(sent.task_id)
    expected = {"agent_id": str(dt.agent_id), "task_id": str(sent.task_id)}
    assert form(only(dt, "getsendprogress")) == expected
    assert form(only(dt, "getsendresult")) == expected
    assert form(only(dt, "status_bar_update")) == {
        **expected,
        "status_value": "done",
        "status_bg": "0xFF78C06E",
    }
    # recall names the task differently (§4.3).
    assert form(only(dt, "recall")) == {
        "agent_id": str(dt.agent_id),
        "msg_task_id": str(sent.task_id),
    }
    paths = [r.path for r in dt.sim.requests() if r.api != "gettoken"]
    assert paths[1:] == [
        "/topapi/message/corpconversation/getsendprogress",
        "/topapi/message/corpconversation/getsendresult",
        "/topapi/message/corpconversation/status_bar/update",
        "/topapi/message/corpconversation/recall",
    ]


def test_media_upload_is_multipart_with_type_on_the_url(dt, client):
    client.upload_media("file", "notice.pdf", b"%PDF-1.4 hello")
    recorded = only(dt, "media_upload")
    assert recorded.path == "/media/upload"
    assert recorded.query["type"] == "file"
    assert recorded.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert recorded.params["type"] == "file"
    assert recorded.params["media"] == {
        "filename": "notice.pdf",
        "content_type": "application/octet-stream",
        "size": 14,
        "data": b"%PDF-1.4 hello",
    }
    assert b'name="media"; filename="notice.pdf"' in recorded.body


def test_directory_calls_use_documented_paths_and_fields(dt, client):
    client.list_sub_departments(1)
    client.list_sub_department_ids(100)
    client.list_user_ids(100)
    client.list_users(100, cursor=5, size=10)
    client.get_user("hko0000001")
    shapes = {r.path: form(r) for r in dt.sim.requests() if r.api != "gettoken"}
    assert shapes == {
        "/topapi/v2/department/listsub": {"dept_id": "1", "language": "zh_CN"},
        "/topapi/v2/department/listsubid": {"dept_id": "100"},
        "/topapi/user/listid": {"dept_id": "100"},
        "/topapi/v2/user/list": {
            "dept_id": "100",
            "cursor": "5",
            "size": "10",
            "language": "zh_CN",
        },
        "/topapi/v2/user/get": {"userid": "hko0000001", "language": "zh_CN"},
    }
    assert all(set(r.query) == {"access_token"} for r in dt.sim.requests() if r.api != "gettoken")


def test_simulator_answers_in_dingtalk_shapes(dt, client):
    sent = client.send(messages.text("x"), userids=users(2))
    dt.sim.advance(1)
    client.get_send_result(sent.task_id)
    client.get_user("hko0000001")
    import requests

    token = client.get_access_token()
    base = dt.base_url
    result = requests.post(
        f"{base}/topapi/message/corpconversation/getsendresult",
        params={"access_token": token},
        data={"agent_id": dt.agent_id, "task_id": sent.task_id},
        timeout=5,
    ).json()
    assert set(result) == {"errcode", "errmsg", "send_result", "request_id"}
    assert set(result["send_result"]) == {
        "invalid_user_id_list",
        "forbidden_user_id_list",
        "failed_user_id_list",
        "read_user_id_list",
        "unread_user_id_list",
        "invalid_dept_id_list",
        "forbidden_list",
    }
    user = requests.post(
        f"{base}/topapi/v2/user/get",
        params={"access_token": token},
        data={"userid": "hko0000001"},
        timeout=5,
    ).json()["result"]
    assert {"userid", "unionid", "name", "mobile", "state_code", "dept_id_list", "active"} <= set(
        user
    )
    assert user["state_code"] == "852"
    assert len(user["mobile"]) == 8


def test_json_bodies_are_accepted_too(dt, client):
    import requests

    token = client.get_access_token()
    reply = requests.post(
        f"{dt.base_url}/topapi/message/corpconversation/asyncsend_v2",
        params={"access_token": token},
        json={
            "agent_id": dt.agent_id,
            "userid_list": "hko0000001",
            "msg": {"msgtype": "text", "text": {"content": "j"}},
        },
        timeout=5,
    ).json()
    assert reply["errcode"] == 0
    assert reply["task_id"]
