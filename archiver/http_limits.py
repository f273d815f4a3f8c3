"""uvicorn's h11 protocol with a deadline for a request's headers.

uvicorn closes a connection that is idle after an answer (`timeout_keep_alive`), but it has no
timeout for the headers themselves: a connection that sends nothing, or a few header bytes at
a time, is kept open for ever (and the keep-alive timer is cancelled by any byte). This class
closes a connection whose request headers are not complete `header_timeout` seconds after the
connection opened or after the previous answer. Imported only by `serve` (uvicorn is the
`[serve]` extra).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._waiting_for_headers():
            self._disarm()  # a request is being answered; the next one gets a new deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to give uvicorn.Config(http=…)."""
    return type("HeaderTimeout", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout})
