from __future__ import annotations

import json

import pytest

from dingtalk import messages
from dingtalk.errors import MessageInvalid
from dingtalk.messages import Button


def test_text_builds_the_documented_shape():
    assert messages.text("Red rainstorm 紅雨") == {
        "msgtype": "text",
        "text": {"content": "Red rainstorm 紅雨"},
    }


def test_link_uses_camel_case_keys():
    msg = messages.link("https://www.hko.gov.hk", "@lADOADmaWMzazQKA", "Typhoon", "Signal No. 8")
    assert msg == {
        "msgtype": "link",
        "link": {
            "messageUrl": "https://www.hko.gov.hk",
            "picUrl": "@lADOADmaWMzazQKA",
            "title": "Typhoon",
            "text": "Signal No. 8",
        },
    }


def test_markdown_image_file_voice_shapes():
    assert messages.markdown("t", "# h") == {
        "msgtype": "markdown",
        "markdown": {"title": "t", "text": "# h"},
    }
    assert messages.image("@a") == {"msgtype": "image", "image": {"media_id": "@a"}}
    assert messages.file("@f") == {"msgtype": "file", "file": {"media_id": "@f"}}
    assert messages.voice("@v", 10) == {
        "msgtype": "voice",
        "voice": {"media_id": "@v", "duration": "10"},
    }


def test_action_card_single_and_buttons():
    single = messages.action_card_single(
        "Boil water", "**WSD** notice", "查看詳情", "https://wsd.gov.hk"
    )
    assert single["action_card"] == {
        "title": "Boil water",
        "markdown": "**WSD** notice",
        "single_title": "查看詳情",
        "single_url": "https://wsd.gov.hk",
    }
    card = messages.action_card_buttons(
        "Poll",
        "Are you safe?",
        [Button("Yes 是", "https://a.example/y"), Button("No 否", "https://a.example/n")],
        horizontal=True,
    )
    assert card["action_card"]["btn_orientation"] == "1"
    assert card["action_card"]["btn_json_list"] == [
        {"title": "Yes 是", "action_url": "https://a.example/y"},
        {"title": "No 否", "action_url": "https://a.example/n"},
    ]


def test_oa_shape_with_status_bar():
    msg = messages.oa(
        "https://fsd.gov.hk/n/1",
        "FFBBBBBB",
        head_text="FSD",
        title="Hill fire",
        form=[("District 地區:", "Sha Tin")],
        content="Keep away",
        status_value="進行中",
        status_bg="0xFFF65E5E",
    )
    assert msg == {
        "msgtype": "oa",
        "oa": {
            "message_url": "https://fsd.gov.hk/n/1",
            "head": {"bgcolor": "FFBBBBBB", "text": "FSD"},
            "body": {
                "title": "Hill fire",
                "form": [{"key": "District 地區:", "value": "Sha Tin"}],
                "content": "Keep away",
            },
            "status_bar": {"status_value": "進行中", "status_bg": "0xFFF65E5E"},
        },
    }


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: messages.text("字" * 700), "msg"),  # 2100 bytes of UTF-8
        (lambda: messages.text(""), "text.content"),
        (lambda: messages.markdown("t" * 65, "x"), "markdown.title"),
        (lambda: messages.link("ftp://x", "@p", "t", "x"), "link.messageUrl"),
        (lambda: messages.link("https://x", "@p", "t" * 101, "x"), "link.title"),
        (lambda: messages.action_card_single("t" * 65, "m", "s", "https://x"), "action_card.title"),
        (
            lambda: messages.action_card_single("t", "m", "s" * 21, "https://x"),
            "action_card.single_title",
        ),
        (
            lambda: messages.action_card_single("t", "m", "s", "https://x/" + "a" * 500),
            "action_card.single_url",
        ),
        (lambda: messages.action_card_buttons("t", "m", []), "action_card.btn_json_list"),
        (
            lambda: messages.action_card_buttons("t", "m", [Button("b", "https://x")] * 6),
            "action_card.btn_json_list",
        ),
        (
            lambda: messages.action_card_buttons("t", "m", [Button("b" * 21, "https://x")]),
            "action_card.btn_json_list[0].title",
        ),
        (
            lambda: messages.action_card_buttons("t", "m", [Button("b", "https://x/" + "u" * 700)]),
            "action_card.btn_json_list[0].action_url",
        ),
        (lambda: messages.oa("https://x", "red"), "oa.head.bgcolor"),
        (lambda: messages.oa("https://x", "FFBBBBBB", head_text="a" * 11), "oa.head.text"),
        (lambda: messages.oa("https://x", "FFBBBBBB", form=[("k", "v")] * 7), "oa.body.form"),
        (
            lambda: messages.oa("https://x", "FFBBBBBB", status_value="x", status_bg="red"),
            "oa.status_bar.status_bg",
        ),
        (lambda: messages.image("has space"), "image.media_id"),
        (lambda: messages.voice("@v", 60), "voice.duration"),
        (lambda: messages.voice("@v", 0), "voice.duration"),
    ],
)
def test_limits_raise_message_invalid_naming_the_field(build, field):
    with pytest.raises(MessageInvalid) as info:
        build()
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert field in str(info.value)


def test_size_limit_counts_utf8_bytes_of_compact_json():
    overhead = len(json.dumps({"msgtype": "text", "text": {"content": ""}}, separators=(",", ":")))
    fits = "a" * (2048 - overhead)
    assert messages.text(fits)["text"]["content"] == fits
    with pytest.raises(MessageInvalid):
        messages.text(fits + "a")


def test_validate_msg_rejects_two_types_and_unknown_types():
    with pytest.raises(MessageInvalid, match="only one message type"):
        messages.validate_msg({"msgtype": "text", "text": {"content": "a"}, "markdown": {}})
    with pytest.raises(MessageInvalid) as info:
        messages.validate_msg({"msgtype": "sms", "sms": {}})
    assert info.value.field == "msgtype"


@pytest.mark.parametrize(
    ("media_type", "filename", "size", "ok"),
    [
        ("image", "map.png", 1000, True),
        ("image", "map.exe", 1000, False),
        ("voice", "a.amr", 2 * 1024 * 1024 + 1, False),
        ("file", "notice.pdf", 20 * 1024 * 1024, True),
        ("file", "notice.pdf", 0, False),
        ("sticker", "a.png", 10, False),
    ],
)
def test_media_upload_validation(media_type, filename, size, ok):
    if ok:
        messages.validate_media_upload(media_type, filename, size)
    else:
        with pytest.raises(MessageInvalid):
            messages.validate_media_upload(media_type, filename, size)
