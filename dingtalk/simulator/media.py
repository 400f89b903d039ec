"""``media/upload``: checks a multipart upload's type, extension and size, and keeps only
its description under a fresh ``media_id`` (image, file and voice messages must name one)."""

from __future__ import annotations

import secrets
from typing import Any

from dingtalk.messages import MEDIA_TYPES
from dingtalk.simulator.state import AppState, SimulatorState
from dingtalk.simulator.wire import ApiError


def media_upload(
    sim: SimulatorState, state: AppState, params: dict[str, Any], now: float
) -> dict[str, Any]:
    media = params.get("media")
    if not isinstance(media, dict):
        raise ApiError(
            43008, "需要multipart请求, 文件字段名为media (multipart field media required)"
        )
    media_type = str(params.get("type", ""))
    if media_type not in MEDIA_TYPES:
        raise ApiError(40004, "不合法的媒体文件类型 (invalid media type)")
    max_bytes, extensions = MEDIA_TYPES[media_type]
    filename = str(media["filename"])
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension not in extensions:
        raise ApiError(40005, "不合法的文件类型 (invalid file type)")
    if not 0 < media["size"] <= max_bytes:
        raise ApiError(40006, "不合法的文件大小 (invalid file size)")
    media_id = "@lA" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
    created = int(now * 1000)
    state.media[media_id] = {"type": media_type, "filename": filename, "size": media["size"]}
    return {"type": media_type, "media_id": media_id, "created_at": created}
