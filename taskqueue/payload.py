"""Payload validation: what ``enqueue`` / ``enqueue_many`` accept (bytes-like, within
``max_payload_bytes``), checked before anything is sent."""

from __future__ import annotations

from typing import Any

from .errors import PayloadTooLarge

PAYLOAD_TYPES = (bytes, bytearray, memoryview)
Payload = bytes | bytearray | memoryview


def payload_type_error(payload: object, where: str) -> TypeError:
    name = type(payload).__name__
    hint = f"{where}.encode()" if isinstance(payload, str) else f"json.dumps({where}).encode()"
    return TypeError(f"{where} must be bytes, got {name}: encode it first, e.g. {hint}")


def checked_payload(payload: Any, limit: int, where: str = "payload") -> Payload:
    """The payload if it is bytes-like and within ``limit`` (``max_payload_bytes``); else TypeError or
    PayloadTooLarge. Nothing has been sent when either is raised."""
    if isinstance(payload, bytes | bytearray):
        size = len(payload)
    elif isinstance(payload, memoryview):
        size = payload.nbytes
        if not payload.c_contiguous:  # a strided view cannot be concatenated: copy it
            payload = payload.tobytes()
    else:
        raise payload_type_error(payload, where)
    if size > limit:
        raise PayloadTooLarge(
            f"payload_too_large: {where} is {size:,} bytes, over max_payload_bytes={limit:,} "
            f"({limit / 2**20:g} MiB); raise it with TaskQueue(..., max_payload_bytes=N) or "
            "QueueSettings(max_payload_bytes=N) (Redis refuses values over its proto-max-bulk-len, 512 MB)"
        )
    return payload


def checked_payloads(payloads: Any, limit: int) -> list[Payload]:
    """``checked_payload`` of every item, the first bad one raising (named ``payloads[i]``). A batch of
    plain ``bytes`` within the limit, the usual case, is taken as it is, without a call per item."""
    items = list(payloads)
    for payload in items:
        if type(payload) is not bytes or len(payload) > limit:
            return [checked_payload(p, limit, f"payloads[{i}]") for i, p in enumerate(items)]
    return items
