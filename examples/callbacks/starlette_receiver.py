"""An agent's webhook receiver for Countersign's decision callbacks, with Starlette (FastAPI alike:
the same handler works as a FastAPI route taking ``request: Request``).

    export COUNTERSIGN_CALLBACK_SECRET=$(countersign tenant callback-secret acme-support)
    uvicorn examples.callbacks.starlette_receiver:app --port 8080
"""

from __future__ import annotations

import os

from countersign_client import SIGNATURE_HEADER, BadSignature, CallbackReceiver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def make_app(receiver: CallbackReceiver) -> Starlette:
    async def countersign_callback(request: Request) -> Response:
        try:
            decided = await receiver.handle_async(await request.body(), request.headers.get(SIGNATURE_HEADER, ""))
        except BadSignature:
            return Response(status_code=401)  # not from Countersign, or replayed long after
        print(f"request {decided.id} was {decided.status}")
        return Response(status_code=204)

    return Starlette(routes=[Route("/countersign", countersign_callback, methods=["POST"])])


app = make_app(CallbackReceiver(os.environ.get("COUNTERSIGN_CALLBACK_SECRET", "")))
