"""An agent's webhook receiver for Countersign's decision callbacks, with aiohttp.

export COUNTERSIGN_CALLBACK_SECRET=$(countersign tenant callback-secret acme-support)
python examples/callbacks/aiohttp_receiver.py
"""

from __future__ import annotations

import os

from aiohttp import web
from countersign_client import SIGNATURE_HEADER, BadSignature, CallbackReceiver


def make_app(receiver: CallbackReceiver) -> web.Application:
    async def countersign_callback(request: web.Request) -> web.Response:
        try:
            decided = await receiver.handle_async(await request.read(), request.headers.get(SIGNATURE_HEADER, ""))
        except BadSignature:
            return web.Response(status=401)  # not from Countersign, or replayed long after
        print(f"request {decided.id} was {decided.status}")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/countersign", countersign_callback)
    return app


if __name__ == "__main__":
    web.run_app(make_app(CallbackReceiver(os.environ["COUNTERSIGN_CALLBACK_SECRET"])), port=8080)
