"""Client of the router's control socket (sync and asyncio), and its typed errors.

Wire format: a UNIX stream socket; each request is one JSON object on one line
(``{"op": "impair", "dir": "a>b", "params": {...}}``), each reply one JSON line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": CODE, "message": TEXT}``.
Ops: ping, impair, blackout, restore, clear, config, truth, reset, shutdown.
"""
from __future__ import annotations

import asyncio
import json
import socket

MAX_REPLY = 64 * 1024 * 1024


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says in which state."""


class ControlError(LabError):
    """The router refused a request (``code`` is its stable error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _decode(line: bytes) -> object:
    if not line:
        raise LabError("router closed the control connection without a reply (router dead?)")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "error"), reply.get("message", ""))
    return reply.get("result")


def _encode(op: str, fields: dict) -> bytes:
    return json.dumps({"op": op, **fields}).encode() + b"\n"


def request(path: str, op: str, timeout: float = 10.0, **fields) -> object:
    """One request over a fresh connection (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as exc:
            raise LabError(f"cannot reach the router at {path}: {exc}") from exc
        s.sendall(_encode(op, fields))
        chunks = []
        total = 0
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            chunks.append(data)
            total += len(data)
            if data.endswith(b"\n"):
                break
            if total > MAX_REPLY:
                raise LabError("router reply too large")
        return _decode(b"".join(chunks))


async def arequest(path: str, op: str, timeout: float = 10.0, **fields) -> object:
    """One request over a fresh connection (asyncio)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(path, limit=MAX_REPLY), timeout)
    except (TimeoutError, OSError) as exc:
        raise LabError(f"cannot reach the router at {path}: {exc!r}") from exc
    try:
        writer.write(_encode(op, fields))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return _decode(line)
