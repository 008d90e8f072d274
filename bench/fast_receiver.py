"""A webhook receiver that answers 200 at once (raw ASGI on uvicorn + httptools), for bench/dispatch.py.

It verifies nothing: it measures the dispatcher, not a consumer. It records the arrival time of each
`webhook-id` (for commit -> POST latency); `GET /stats` returns {count, arrivals: {id: unix time}}
and `POST /stats/reset` clears them.

    python -m bench.fast_receiver --port 8765
"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn

ARRIVALS: dict[str, float] = {}
COUNT = [0]
OK = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"ok"}


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    now = time.time()
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    if scope["path"].startswith("/stats"):
        if scope["method"] == "POST":
            ARRIVALS.clear()
            COUNT[0] = 0
        body = json.dumps({"count": COUNT[0], "arrivals": ARRIVALS}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        return
    COUNT[0] += 1
    for k, v in scope["headers"]:
        if k == b"webhook-id":
            ARRIVALS.setdefault(v.decode(), now)
            break
    await send(OK)
    await send(BODY)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, http="httptools", loop="uvloop",
                log_level="warning", access_log=False, lifespan="off", backlog=4096)  # fmt: skip


if __name__ == "__main__":
    main()
