"""The training phones render each message as DingTalk would, page and search every phone,
and follow a message's own links only (marking it read, as opening it on a phone does)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
import requests

from dingtalk import messages
from dingtalk.client import DingTalkClient
from dingtalk.simulator.testing import RunningSimulator, running_simulator


@pytest.fixture
def dt() -> Iterator[RunningSimulator]:
    with running_simulator(directory_size=300, time_scale=0, limits={"enabled": False}) as running:
        yield running


@pytest.fixture
def client(dt: RunningSimulator) -> Iterator[DingTalkClient]:
    with DingTalkClient(
        dt.app_key, dt.app_secret, dt.agent_id, base_url=dt.base_url, clock=dt.sim.clock.now
    ) as c:
        yield c


def hrefs(page: str, contains: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r"href='([^']*)'", page) if contains in h]


def test_markdown_cards_and_media_render_and_confirm_opens_the_link(dt, client) -> None:
    client.send(
        messages.markdown(
            "Flood", "# Head\n**bold** *it* [Map](https://example.org/map)\n- a\n- b"
        ),
        userids=["hko0000001"],
    )
    client.send(
        messages.action_card_single(
            "Card", "Please <b>confirm</b>", "Confirm", "http://portal.test/c/t/"
        ),
        userids=["hko0000001"],
    )
    voice = client.upload_media("voice", "clip.mp3", b"ID3-clip")
    client.send(messages.voice(voice.media_id, 7), userids=["hko0000001"])
    dt.sim.advance(1)
    page = requests.get(dt.base_url + "/_sim/phones/hko0000001", timeout=5).text

    assert "<strong>bold</strong>" in page
    assert "<em>it</em>" in page
    assert "<li>a</li><li>b</li>" in page
    assert "Please &lt;b&gt;confirm&lt;/b&gt;" in page  # escaped, not markup
    assert "<audio controls" in page
    assert "7 s" in page
    assert "<meta http-equiv" not in page
    for landmark in ("<header>", "<nav ", "<main>"):
        assert landmark in page
    media = re.search(r"src='(/_sim/media/[^']+)'", page)
    assert media
    assert requests.get(dt.base_url + media.group(1), timeout=5).content == b"ID3-clip"

    (confirm,) = [h for h in hrefs(page, "/_sim/phones/open") if "portal.test" in h]
    card_task = dt.sim.inbox("hko0000001")[1]["task_id"]
    assert dt.sim.inbox("hko0000001")[1]["read_at"] is None
    tapped = requests.get(dt.base_url + confirm, timeout=5, allow_redirects=False)
    assert tapped.status_code == 303
    assert tapped.headers["Location"] == "http://portal.test/c/t/"
    assert next(e for e in dt.sim.inbox("hko0000001") if e["task_id"] == card_task)["read_at"]

    # Only an address the message carries is followed.
    forged = confirm.replace("portal.test", "evil.test")
    assert requests.get(dt.base_url + forged, timeout=5, allow_redirects=False).status_code == 400


def test_the_overview_pages_and_searches_every_phone(dt, client) -> None:
    for i in range(30):
        client.send(messages.text(f"Notice {i}"), userids=[f"hko{i:07d}"])
    dt.sim.advance(1)
    first = requests.get(dt.base_url + "/_sim/phones", timeout=5).text
    assert first.count("class='phone'") == 24
    assert "30 phones" in first
    (following,) = hrefs(first, "page=2")
    second = requests.get(dt.base_url + following, timeout=5).text
    assert second.count("class='phone'") == 6
    found = requests.get(dt.base_url + "/_sim/phones", params={"q": "hko0000003"}, timeout=5).text
    assert found.count("class='phone'") == 1
    assert "Notice 3" in found
    name = dt.sim.apps[dt.app_key].directory.get_user("hko0000004").name
    by_name = requests.get(dt.base_url + "/_sim/phones", params={"q": name}, timeout=5).text
    assert "Notice 4" in by_name
