"""The soak's webhook receiver: the benchmark's arrival recorder, which can also be down.

While `down`, every request's connection is closed without an answer, as by a receiver that
has crashed: the sender sees a failed delivery, and nothing counts as delivered. Only requests
answered 200 are recorded, so arrivals per job are exactly the 2xx deliveries per
`webhook-id`.
"""

from __future__ import annotations

from aiohttp import web

from bench.webhook_sink import ArrivalReceiver


class SwitchableReceiver(ArrivalReceiver):
    """`ArrivalReceiver` with a `down` switch; `dropped` counts requests refused while down."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.dropped = 0

    async def _receive(self, request: web.Request) -> web.Response:
        if self.down:
            self.dropped += 1
            # Closing the transport first: the response below is never written.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)
        return await super()._receive(request)
