"""A webhook receiver for tests: a real HTTP server on loopback that records every request and
answers an error the first N times (or always), optionally slowly or with Retry-After."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from gpusupply.sandbox.runner import ServerTask


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    fail_first: int = 0  # answer `fail_status` to the first N requests
    fail_status: int = 500
    always_fail: bool = False
    delay: float = 0.0  # seconds before answering
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Received(scope["path"], headers, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        failing = self.always_fail or len(self.requests) <= self.fail_first
        status = self.fail_status if failing else 200
        extra = [(k.encode(), v.encode()) for k, v in self.extra_headers.items()] if failing else []
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain"), *extra]})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"try again"})


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve `receiver` on a loopback port for the block; `receiver.url` is its base URL."""
    server = await ServerTask(receiver).start()
    receiver.url = server.url
    try:
        yield receiver
    finally:
        await server.stop()
