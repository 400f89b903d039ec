"""Compose errors in plain words, per field and language, tied to their fields, summarised on top."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import translation

from dingtalk import messages as dt
from dingtalk.errors import MessageInvalid
from notices.content_errors import explain
from notices.models import Notice
from notices.testing import add_recipients, compose_data, everyone_segment

CARD = {
    "kind": "action_card",
    "button_1_title_en": "Details",
    "button_1_title_zh": "詳情",
    "button_1_url": "https://www.wsd.gov.hk/",
}


@pytest.fixture
def audience(cast_a):
    add_recipients(cast_a.department, 3)
    return everyone_segment(cast_a.department)


def _post(client, cast, data, **headers):
    return client.post(reverse("notices:compose", args=[cast.department.code]), data, **headers)


def test_too_long_chinese_text_names_the_language_the_size_and_the_limit(
    cast_a, verified_client, audience
):
    client = verified_client(cast_a.pr_officer)
    data = compose_data(audience, **CARD, body_zh="字" * 1279)
    english = _post(client, cast_a, data)
    assert english.context["form"].errors["body_zh"] == [
        "The Chinese text is 1,279 characters; DingTalk allows 1,000."
    ]
    chinese = _post(client, cast_a, data, HTTP_ACCEPT_LANGUAGE="zh-hant")
    assert chinese.context["form"].errors["body_zh"] == [
        "中文內文有 1,279 個字元，釘釘只容許 1,000 個。"  # noqa: RUF001
    ]
    visible = re.sub(r"<[^>]+>", " ", chinese.content.decode())
    assert "action_card" not in visible
    assert "non-empty string" not in visible
    assert not Notice.objects.exists()


def test_failed_save_has_a_focused_summary_linking_to_fields_described_by_their_errors(
    cast_a, verified_client, audience
):
    client = verified_client(cast_a.pr_officer)
    body = _post(client, cast_a, compose_data(audience, **CARD, body_zh="字" * 1279)).content
    page = body.decode()
    summary = re.search(r'<div class="error-summary"[^>]*>(.*?)</div>', page, re.S)
    assert summary is not None
    assert "autofocus" in summary.group(0)
    assert 'tabindex="-1"' in summary.group(0)
    assert '<a href="#id_body_zh">' in summary.group(1)
    assert "DingTalk allows 1,000" in summary.group(1)
    # The summary comes before the first field of the form.
    assert page.index("error-summary") < page.index('name="tier"')
    textarea = re.search(r"<textarea[^>]*id=\"id_body_zh\"[^>]*>", page)
    assert textarea is not None
    assert 'aria-describedby="id_body_zh_error_0"' in textarea.group(0)
    assert 'aria-invalid="true"' in textarea.group(0)
    assert '<p class="field-error" id="id_body_zh_error_0">' in page


def test_button_errors_name_the_button_and_every_button_input_points_at_them(
    cast_a, verified_client, audience
):
    client = verified_client(cast_a.pr_officer)
    data = compose_data(audience, **{**CARD, "button_1_title_zh": "長" * 25})
    page = _post(client, cast_a, data, HTTP_ACCEPT_LANGUAGE="zh-hant").content.decode()
    assert "按鈕 1 的中文標題有 25 個字元，釘釘只容許 20 個。" in page  # noqa: RUF001
    url_input = re.search(r"<input[^>]*id=\"id_button_3_url\"[^>]*>", page)
    assert url_input is not None
    assert "id_button_1_title_en_error_0" in url_input.group(0)


@pytest.mark.parametrize(
    "message",
    [
        {"msgtype": "markdown", "markdown": {"title": "", "text": "x"}},
        {"msgtype": "markdown", "markdown": {"title": "t" * 70, "text": "x"}},
        {"msgtype": "text", "text": {"content": "x" * 2100}},
        {
            "msgtype": "link",
            "link": {"messageUrl": "ftp://x", "picUrl": "@m", "title": "t", "text": "x"},
        },
        {
            "msgtype": "link",
            "link": {"messageUrl": "https://x", "picUrl": "nope", "title": "t", "text": "x"},
        },
        {"msgtype": "voice", "voice": {"media_id": "@m", "duration": "90"}},
        {"msgtype": "markdown", "markdown": {"title": "t", "text": "字" * 900}},
        {
            "msgtype": "action_card",
            "action_card": {
                "title": "t",
                "markdown": "x",
                "btn_orientation": "0",
                "btn_json_list": [{"title": "ok", "action_url": "mailto:x"}],
            },
        },
    ],
)
def test_every_refusal_reads_without_wire_names_in_both_languages(message):
    with pytest.raises(MessageInvalid) as info:
        dt.validate_msg(message)
    for lang, wire in (("en", info.value.field), ("zh-hant", info.value.field)):
        with translation.override(lang):
            text = explain(info.value, "zh")
        assert wire not in text
        for jargon in (
            "msgtype",
            "btn_json_list",
            "action_url",
            "messageUrl",
            "picUrl",
            "media_id",
        ):
            assert jargon not in text
        assert "DingTalk would refuse" not in text
        if lang == "zh-hant":
            assert re.search(r"[\u4e00-\u9fff]", text)
            assert not re.search(r"\b(the|is|must|characters)\b", text)
