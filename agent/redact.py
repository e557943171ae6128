"""One place that hides credentials embedded in URLs (cameras often put user:password in RTSP URLs)."""

from __future__ import annotations

import re
from typing import Any

# userinfo is everything between "://" and the LAST "@" before the host: passwords may contain "@".
_USERINFO = re.compile(r"(?<=://)[^/\s]*@")


def redact_url(text: str) -> str:
    """`rtsp://user:pass@host/x` -> `rtsp://***@host/x`; works on URLs inside longer text too."""
    return _USERINFO.sub("***@", text)


def redact_value(value: Any) -> Any:
    """Redact every string in nested dicts/lists (config dumps, validation inputs)."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value
