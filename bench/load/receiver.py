"""The load runs' loopback receiver: `waybill receiver`'s verification, plus a durable arrival log.

Every POST is verified exactly as the example consumer does it (dispatcher/receiver.py `Receiver.verify`:
Standard Webhooks signature, 5-minute timestamp window); a bad signature is a 401 and counted. Each
verified POST — duplicates included, since counting them is the point — appends one JSON line to the
file named by WAYBILL_LOAD_ARRIVALS: `{"id", "type", "at" (receiver clock, Unix s), "ts" (the event's
`timestamp`, the business commit)}`. The file survives the receiver being killed and restarted (the
"receiver down" fault). The secret comes from WAYBILL_RECEIVER_SECRET_FILE (0600), never argv.

    WAYBILL_RECEIVER_SECRET_FILE=… WAYBILL_LOAD_ARRIVALS=… python -m bench.load.receiver --port 3003
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from dispatcher import signing
from dispatcher.receiver import Receiver, answer, load_secrets, read_request


class RecordingReceiver(Receiver):
    def __init__(self, secrets: list[str], arrivals: str) -> None:
        super().__init__(secrets)
        self.file = open(arrivals, "a", buffering=1)  # noqa: SIM115 - open for the process's life
        self.rejected = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            return await answer(send, 200, {"ok": True, "rejected": self.rejected})
        at = time.time()
        body, headers = await read_request(scope, receive)
        try:
            msg_id = self.verify(body, headers)
        except signing.VerificationError as exc:
            self.rejected += 1
            return await answer(send, 401, {"error": str(exc)})
        event = json.loads(body)
        line = {"id": msg_id, "type": event["eventType"], "at": at, "ts": event["timestamp"]}
        self.file.write(json.dumps(line) + "\n")
        return await answer(send, 200, {"ok": True})


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    app = RecordingReceiver(load_secrets(), os.environ["WAYBILL_LOAD_ARRIVALS"])
    uvicorn.run(app, host=args.host, port=args.port, http="httptools", log_level="warning",
                access_log=False, lifespan="off", backlog=4096)  # fmt: skip


if __name__ == "__main__":
    main()
