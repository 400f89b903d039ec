"""The simulator itself: control endpoints, pages, WSGI, bad input, events, directory."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from dingtalk import messages
from dingtalk.client import DingTalkClient
from dingtalk.crypto import CallbackCrypto
from dingtalk.simulator.config import Limits, SimulatorConfig
from dingtalk.simulator.directory import Directory
from dingtalk.simulator.limits import per_call_reach
from dingtalk.simulator.simulator import Simulator
from dingtalk.simulator.testing import running_simulator
from dingtalk.simulator.wsgi import wsgi_app


def users(n, start=0):
    """Generated userids of the first demo app (hko0000000, hko0000001, ...)."""
    return [f"hko{i:07d}" for i in range(start, start + n)]


ROOT = Path(__file__).resolve().parents[2]


def post(dt, path, **payload):
    return requests.post(dt.base_url + path, json=payload, timeout=5)


def test_running_simulator_starts_fast_and_stops_cleanly():
    started = time.perf_counter()
    with running_simulator(directory_size=100) as dt:
        assert time.perf_counter() - started < 0.2
        assert requests.get(dt.base_url + "/_sim/health", timeout=5).json()["ok"] is True
        base = dt.base_url
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/_sim/health", timeout=1)


def test_control_endpoints_drive_clock_limits_faults_and_reset(dt, client):
    now = requests.get(dt.base_url + "/_sim/clock", timeout=5).json()["now"]
    assert post(dt, "/_sim/clock", advance=3600).json()["now"] == pytest.approx(now + 3600)
    assert post(dt, "/_sim/limits", per_user_daily_cap=7).json()["per_user_daily_cap"] == 7
    assert post(dt, "/_sim/limits", enabled=False).json()["enabled"] is False
    assert dt.sim.limits.get("per_user_daily_cap") is None
    assert post(dt, "/_sim/faults", latency_s=0.0, failed_share=0.0).status_code == 200
    assert post(dt, "/_sim/faults", bogus=1).status_code == 400
    post(dt, "/_sim/inject", api="asyncsend_v2", errcode=90018)
    with pytest.raises(Exception, match="90018"):
        client.send(messages.text("x"), userids=users(1))
    sent = client.send(messages.text("x"), userids=users(2))
    counters = requests.get(dt.base_url + "/_sim/counters", timeout=5).json()
    assert counters["calls"]["asyncsend_v2"] == 2
    assert counters["errcodes"]["90018"] == 1
    assert counters["deliveries"] == 2
    post(dt, "/_sim/clock", advance=1)
    assert post(dt, "/_sim/read", task_id=sent.task_id, userid="hko0000001").json() == {"ok": True}
    inbox = requests.get(dt.base_url + "/_sim/inbox/hko0000001", timeout=5).json()
    assert inbox[0]["task_id"] == sent.task_id
    assert inbox[0]["read_at"] is not None
    task = requests.get(f"{dt.base_url}/_sim/tasks/{sent.task_id}", timeout=5).json()
    assert task["delivered"] == 2
    assert "hko0000001" in task["read"]
    recorded = requests.get(dt.base_url + "/_sim/requests?api=asyncsend_v2", timeout=5).json()
    assert len(recorded) == 2
    assert recorded[0]["path"].endswith("asyncsend_v2")
    assert post(dt, "/_sim/revoke-tokens").json()["revoked"] == 1
    assert post(dt, "/_sim/reset").json() == {"ok": True}
    assert dt.sim.counters()["tasks"] == 0
    assert requests.get(dt.base_url + "/_sim/nothing", timeout=5).status_code == 404


def test_apps_endpoint_lists_the_demo_departments(dt):
    apps = requests.get(dt.base_url + "/_sim/apps", timeout=5).json()
    assert [a["code"] for a in apps] == ["HKO", "FEHD", "WSD", "CHP", "FSD", "DSD", "TD", "HAD"]
    assert apps[0]["app_key"] == "ding-demo-hko"
    assert apps[0]["app_secret"] == "demo-secret-hko"
    assert len({a["agent_id"] for a in apps}) == 8
    assert all(len(a["callback_aes_key"]) == 43 for a in apps)


def test_phones_page_is_bilingual_self_contained_and_escaped(dt, client):
    client.send(messages.text("<script>alert(1)</script> Flood 水浸"), userids=users(2))
    dt.sim.advance(1)
    page = requests.get(dt.base_url + "/_sim/phones", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "Simulated phones 模擬手機" in html
    assert "Unread 未讀" in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert not re.search(r"(src|href)=['\"]https?://", html)
    one = requests.get(dt.base_url + "/_sim/phones/hko0000001", timeout=5).text
    assert "Mark as read 標記為已讀" in one
    task_id = dt.sim.inbox("hko0000001")[0]["task_id"]
    reply = requests.post(
        dt.base_url + "/_sim/phones/read",
        data={"app": dt.app_key, "userid": "hko0000001", "task_id": task_id},
        timeout=5,
        allow_redirects=False,
    )
    assert reply.status_code == 303
    assert dt.sim.inbox("hko0000001")[0]["read_at"] is not None


@pytest.mark.parametrize(
    ("body", "content_type", "errcode"),
    [
        (b"{not json", "application/json", 40035),
        (b"[1, 2]", "application/json", 40035),
        (b"agent_id=abc&userid_list=a&msg=%7B%7D", "application/x-www-form-urlencoded", 40056),
        (
            b"agent_id=3000101&userid_list=a&msg=not-json",
            "application/x-www-form-urlencoded",
            40035,
        ),
        (
            b"agent_id=3000101&msg=%7B%22msgtype%22%3A%22text%22%2C%22text%22%3A%7B%7D%7D",
            "application/x-www-form-urlencoded",
            40035,
        ),
        (b"\xff\xfe", "application/x-www-form-urlencoded", 40035),
    ],
)
def test_malformed_requests_get_errcode_bodies_not_tracebacks(
    dt, client, body, content_type, errcode
):
    token = client.get_access_token()
    reply = requests.post(
        f"{dt.base_url}/topapi/message/corpconversation/asyncsend_v2?access_token={token}",
        data=body,
        headers={"Content-Type": content_type},
        timeout=5,
    )
    assert reply.status_code == 200
    assert reply.json()["errcode"] == errcode
    assert "Traceback" not in reply.text


def test_missing_or_unknown_token_and_wrong_method(dt):
    base = dt.base_url + "/topapi/message/corpconversation/getsendprogress"
    assert requests.post(base, timeout=5).json()["errcode"] == 41001
    assert requests.post(base + "?access_token=forged", timeout=5).json()["sub_code"] == "40014"
    assert (
        requests.get(dt.base_url + "/media/upload?access_token=x", timeout=5).json()["errcode"]
        == 43002
    )
    assert requests.get(dt.base_url + "/nope", timeout=5).status_code == 404


def raw_exchange(dt, data: bytes) -> bytes:
    host, port = urlsplit(dt.base_url).hostname, urlsplit(dt.base_url).port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b"Connection: close" in b"".join(chunks):
                break
        return b"".join(chunks)


def test_http_level_garbage_and_chunked_bodies(dt):
    assert raw_exchange(dt, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400")
    chunked = b"POST /gettoken HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert raw_exchange(dt, chunked).startswith(b"HTTP/1.1 411")


def test_keep_alive_and_pipelining(dt):
    request = b"GET /_sim/health HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /_sim/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(dt, request * 3 + last)
    assert reply.count(b"HTTP/1.1 200 OK") == 4


def test_wsgi_app_serves_the_same_core():
    sim = Simulator(SimulatorConfig(directory_size=10))
    app = wsgi_app(sim)
    captured = {}

    def start_response(status, headers):
        captured["status"], captured["headers"] = status, headers

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/gettoken",
        "QUERY_STRING": "appkey=ding-demo-hko&appsecret=demo-secret-hko",
        "wsgi.input": io.BytesIO(b""),
        "REMOTE_ADDR": "127.0.0.1",
    }
    body = json.loads(b"".join(app(environ, start_response)))
    assert captured["status"] == "200 OK"
    assert body["errcode"] == 0
    assert body["expires_in"] == 7200
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/topapi/v2/user/get",
        "QUERY_STRING": f"access_token={body['access_token']}",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": "21",
        "wsgi.input": io.BytesIO(b"userid=hko0000003&x=1"),
    }
    user = json.loads(b"".join(app(environ, start_response)))
    assert user["result"]["userid"] == "hko0000003"


class Receiver:
    """A stand-in for the portal's callback view, built on dingtalk.crypto."""

    def __init__(self, crypto: CallbackCrypto, answer_success: bool = True):
        self.crypto = crypto
        self.events: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event = receiver.crypto.decrypt_request(
                    query["msg_signature"], query["timestamp"], query["nonce"], body
                )
                receiver.events.append(event)
                reply = receiver.crypto.encrypt_reply() if answer_success else {"encrypt": "nope"}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dingtalk/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def crypto_for(dt, app_key="ding-demo-hko"):
    config = dt.app(app_key)
    return CallbackCrypto(config.callback_token, config.callback_aes_key, config.app_key)


def test_directory_events_are_pushed_encrypted_and_signed(dt, client):
    with Receiver(crypto_for(dt)) as receiver:
        dt.app("ding-demo-hko").callback_url = receiver.url
        assert dt.sim.check_url("ding-demo-hko")["ok"] is True
        added = dt.sim.directory_event(
            "ding-demo-hko", "user_add_org", dept_id=105, name="Lam Siu Ming"
        )
        assert added["ok"] is True
        new_userid = added["userid"]
        assert client.get_user(new_userid).name == "Lam Siu Ming"
        assert new_userid in client.list_user_ids(105)
        modified = dt.sim.directory_event(
            "ding-demo-hko", "user_modify_org", userid=new_userid, title="Chair"
        )
        assert modified["ok"]
        assert client.get_user(new_userid).title == "Chair"
        assert dt.sim.directory_event("ding-demo-hko", "user_leave_org", userid="hko0000005")["ok"]
        sent = client.send(messages.text("after leave"), userids=["hko0000005"])
        dt.sim.advance(1)
        assert client.get_send_result(sent.task_id).invalid == ["hko0000005"]
    types = [e["EventType"] for e in receiver.events]
    assert types == ["check_url", "user_add_org", "user_modify_org", "user_leave_org"]
    assert receiver.events[1]["UserId"] == [new_userid]
    assert receiver.events[1]["CorpId"] == "ding-corp-hko"


def test_event_push_over_http_control_and_a_bad_reply_is_recorded(dt):
    with Receiver(crypto_for(dt), answer_success=False) as receiver:
        post(dt, "/_sim/callback-url", app="ding-demo-hko", url=receiver.url)
        queued = post(
            dt,
            "/_sim/directory/events",
            app="ding-demo-hko",
            event_type="user_add_org",
            dept_id=100,
        ).json()
        assert queued["queued"] is True
        deadline = time.monotonic() + 3
        while not dt.sim.events and time.monotonic() < deadline:
            time.sleep(0.02)
        events = requests.get(dt.base_url + "/_sim/events", timeout=5).json()
    assert events[0]["ok"] is False
    assert "71009" in events[0]["error"]
    assert receiver.events[0]["UserId"] == [queued["userid"]]


def test_push_without_callback_url_is_reported(dt):
    assert (
        dt.sim.directory_event("ding-demo-td", "user_leave_org", userid="td0000001")["error"]
        == "no callback URL configured"
    )


def test_directory_is_deterministic_with_unique_hong_kong_mobiles():
    first, second = Directory("hko", 5000, 852), Directory("hko", 5000, 852)
    a = [first.get_user(first.userid_for(i)) for i in range(5000)]
    b = [second.get_user(second.userid_for(i)) for i in range(5000)]
    assert a == b
    mobiles = [u.mobile for u in a if u is not None]
    assert len(set(mobiles)) == 5000
    assert all(re.fullmatch(r"\+852[569]\d{7}", m) for m in mobiles)
    other_seed = Directory("hko", 5000, 1)
    assert other_seed.get_user("hko0000001") != a[1]
    assert first.count_members([1]) == 5000
    assert first.count_members([100]) == len(list(first.iter_recipients([100])))


def test_directory_seed_file(tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "departments": [{"dept_id": 900, "name": "Shelter team", "parent_id": 1}],
                "users": [
                    {
                        "userid": "warden1",
                        "name": "Ho Wai Kit",
                        "mobile": "+85291234567",
                        "dept_id_list": [900],
                    }
                ],
            }
        )
    )
    sim = Simulator(SimulatorConfig(directory_size=0, directory_file=str(seed)))
    directory = sim.app().directory
    assert list(directory.iter_recipients([1])) == ["warden1"]
    assert directory.get_user("warden1").mobile == "+85291234567"


def test_per_call_reach_rule_lives_in_one_function():
    assert per_call_reach(4000, Limits()) == (4000, 0, 143103)
    assert per_call_reach(12000, Limits()) == (5000, 7000, 143103)
    assert per_call_reach(12000, Limits(enabled=False)) == (12000, 0, 143103)
    assert per_call_reach(12000, Limits(max_reach_per_call=None)) == (12000, 0, 143103)


def test_failed_share_populates_failed_list(dt, client):
    dt.sim.set_faults(failed_share=0.5)
    sent = client.send(messages.text("x"), userids=users(60))
    dt.sim.advance(1)
    result = client.get_send_result(sent.task_id)
    assert 10 < len(result.failed) < 50
    assert len(result.failed) + len(result.read) + len(result.unread) == 60


def test_readers_follow_a_log_normal_with_the_configured_median():
    with running_simulator(directory_size=2000, time_scale=0, limits=False) as dt:
        dt.sim.set_readers(never_read_share=0.0)
        sim = dt.sim
        state = sim.app()
        sim.handle("GET", "/gettoken", {"appkey": dt.app_key, "appsecret": dt.app_secret}, {}, b"")
        token = state.token
        body = f"agent_id={dt.agent_id}&to_all_user=true&msg=" + json.dumps(
            {"msgtype": "text", "text": {"content": "m"}}
        )
        sim.handle(
            "POST",
            "/topapi/message/corpconversation/asyncsend_v2",
            {"access_token": token},
            {},
            body.encode(),
        )
        task = next(iter(state.tasks.values()))
        delays = sorted(sim.read_at(task, u) - sim.delivered_at(task, u) for u in task.delivered)
        median = delays[len(delays) // 2]
        assert 150 < median < 240  # 3.2 minutes = 192 s


def test_command_line_server_starts_and_answers():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dingtalk.simulator",
            "--port",
            str(port),
            "--limits",
            "off",
            "--directory-size",
            "50",
            "--callback-url",
            "ding-demo-wsd=http://127.0.0.1:9/cb",
        ],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                apps = requests.get(f"http://127.0.0.1:{port}/_sim/apps", timeout=1).json()
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert {a["app_key"]: a["callback_url"] for a in apps}[
            "ding-demo-wsd"
        ] == "http://127.0.0.1:9/cb"
        assert (
            requests.get(f"http://127.0.0.1:{port}/_sim/limits", timeout=1).json()["enabled"]
            is False
        )
    finally:
        process.terminate()
        process.wait(5)


def raw_send(dt, client, **fields):
    token = client.get_access_token()
    data = {"agent_id": str(dt.agent_id), **fields}
    return requests.post(
        f"{dt.base_url}/topapi/message/corpconversation/asyncsend_v2",
        params={"access_token": token},
        data=data,
        timeout=5,
    ).json()


BIG_MSG = json.dumps({"msgtype": "text", "text": {"content": "x" * 2100}})
SMALL_MSG = json.dumps({"msgtype": "text", "text": {"content": "x"}})


@pytest.mark.parametrize(
    ("fields", "errmsg_part"),
    [
        ({"userid_list": ",".join(users(101)), "msg": SMALL_MSG}, "more than 100 userids"),
        (
            {"dept_id_list": ",".join(str(100 + i) for i in range(21)), "msg": SMALL_MSG},
            "more than 20",
        ),
        ({"userid_list": "hko0000001", "msg": BIG_MSG}, "limit 2048"),
        ({"msg": SMALL_MSG}, "不能同时为空"),
    ],
)
def test_simulator_enforces_call_limits_the_client_checks_too(dt, client, fields, errmsg_part):
    reply = raw_send(dt, client, **fields)
    assert reply["errcode"] == 40035
    assert errmsg_part in reply["errmsg"]


def test_limits_off_accepts_what_limits_on_refuses():
    with running_simulator(directory_size=300, time_scale=0, limits="off") as dt:
        client = DingTalkClient(dt.app_key, dt.app_secret, dt.agent_id, base_url=dt.base_url)
        assert raw_send(dt, client, userid_list=",".join(users(150)), msg=SMALL_MSG)["errcode"] == 0
        assert raw_send(dt, client, userid_list="hko0000001", msg=BIG_MSG)["errcode"] == 0
        for _ in range(30):
            assert raw_send(dt, client, userid_list="hko0000001", msg=SMALL_MSG)["errcode"] == 0
        assert dt.sim.counters()["forbidden_total"] == 0


def test_dedupe_switch_off_lets_the_same_content_reach_a_phone_twice() -> None:
    from dingtalk.simulator.__main__ import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args([])).limits.same_content_once_per_day
    config = config_from_args(build_parser().parse_args(["--dedupe", "off"]))
    assert config.limits.same_content_once_per_day is False
    for dedupe, copies in ((True, 1), (False, 2)):
        with running_simulator(limits={"same_content_once_per_day": dedupe}) as dt:
            client = DingTalkClient(
                dt.app_key, dt.app_secret, dt.agent_id, base_url=dt.base_url, clock=dt.sim.clock.now
            )
            userid = "hko0000000"
            client.send(messages.text("same words"), userids=[userid])
            second = client.send(messages.text("same words"), userids=[userid]).task_id
            dt.sim.advance(5)
            codes = client.get_send_result(second).forbidden_codes()
            assert codes == ({} if copies == 2 else {userid: 143106})
            assert len(dt.sim.inbox(userid, dt.app_key)) == copies
