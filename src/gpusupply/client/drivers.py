"""How each client performs a flow's steps (`flows.py`): `BlockingDriver` with httpx's blocking
client and `time.sleep`, `AsyncDriver` with httpx's async client and `asyncio.sleep`. Everything
else the clients do is written once (`base.py` and the method groups).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Self, TypeVar

import httpx

from gpusupply.client.base import DEFAULT_TIMEOUT, ClientBase
from gpusupply.client.flows import (
    Call,
    Emit,
    Flow,
    Outcome,
    Request,
    RetryPolicy,
    Sleep,
    Step,
    WaitPolicy,
    send,
)

T = TypeVar("T")


def _unexpected(step: Step) -> TypeError:
    return TypeError(f"unexpected step {step!r}")


class BlockingDriver(ClientBase):
    """Performs steps with blocking I/O; closes its connections on `close()` or leaving `with`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        wait: WaitPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(url, api_key, retry=retry, wait=wait, clock=clock)
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- driving flows -------------------------------------------------------------------------
    def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            self._sleep(step.seconds)
            return Outcome()
        if isinstance(step, Request):
            try:
                return Outcome(
                    self._http.request(step.method, step.path, params=step.params, json=step.json, headers=step.headers)
                )
            except httpx.TransportError as exc:
                return Outcome(error=exc)
        raise _unexpected(step)

    def _run(self, flow: Flow[T]) -> T:
        outcome = Outcome()
        while True:
            try:
                step = outcome.resume(flow)
            except StopIteration as stop:
                return stop.value
            outcome = self._perform(step)

    def _iterate(self, flow: Flow[None]) -> Iterator[Any]:
        outcome = Outcome()
        while True:
            try:
                step = outcome.resume(flow)
            except StopIteration:
                return
            if isinstance(step, Emit):
                yield step.item
                outcome = Outcome()
            else:
                outcome = self._perform(step)

    def _call(self, call: Call[T]) -> T:
        return self._run(send(call, self.retry))


class AsyncDriver(ClientBase):
    """Performs steps with asyncio; closes its connections on `aclose()` or leaving `async with`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        wait: WaitPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(url, api_key, retry=retry, wait=wait, clock=clock)
        self._sleep = sleep
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- driving flows -------------------------------------------------------------------------
    async def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            await self._sleep(step.seconds)
            return Outcome()
        if isinstance(step, Request):
            try:
                return Outcome(
                    await self._http.request(step.method, step.path, params=step.params, json=step.json, headers=step.headers)
                )
            except httpx.TransportError as exc:
                return Outcome(error=exc)
        raise _unexpected(step)

    async def _run(self, flow: Flow[T]) -> T:
        outcome = Outcome()
        while True:
            try:
                step = outcome.resume(flow)
            except StopIteration as stop:
                return stop.value
            outcome = await self._perform(step)

    async def _iterate(self, flow: Flow[None]) -> AsyncIterator[Any]:
        outcome = Outcome()
        while True:
            try:
                step = outcome.resume(flow)
            except StopIteration:
                return
            if isinstance(step, Emit):
                yield step.item
                outcome = Outcome()
            else:
                outcome = await self._perform(step)

    async def _call(self, call: Call[T]) -> T:
        return await self._run(send(call, self.retry))
