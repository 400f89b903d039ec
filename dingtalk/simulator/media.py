"""``media/upload``: checks a multipart upload's type, extension and size, and keeps its
description (and, up to 2 MB, its bytes for the training phones) under a fresh ``media_id`` (image, file and voice messages must name one)."""

from __future__ import annotations

import secrets
from typing import Any

from dingtalk.messages import MEDIA_TYPES
from dingtalk.simulator.state import AppState, SimulatorState
from dingtalk.simulator.wire import ApiError

KEEP_MEDIA_BYTES = 2 * 1024 * 1024


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
    data = media.get("data")
    state.media[media_id] = {
        "type": media_type,
        "filename": filename,
        "size": media["size"],
        # Kept for the training phones (/_sim/media/<id>) up to a small size only.
        "data": data if isinstance(data, bytes) and len(data) <= KEEP_MEDIA_BYTES else None,
        "content_type": str(media.get("content_type") or "application/octet-stream"),
    }
    return {"type": media_type, "media_id": media_id, "created_at": created}
