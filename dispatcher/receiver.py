"""`waybill receiver`: the example webhook consumer (plan C6) — verify, dedup, print.

It is what docs/webhooks.md tells a consumer to do, in ~60 lines:
1. read the raw body (bytes, before any JSON parsing: the signature covers exactly these bytes);
2. verify `webhook-signature` over "webhook-id.webhook-timestamp.body" with the subscription's
   secret (dispatcher/signing.py `verify`; any Standard Webhooks library does the same) and refuse a
   timestamp more than 5 minutes off (replays) — 401 otherwise;
3. dedup on `webhook-id`: a retry of something already processed is acknowledged (200) and not
   processed again (delivery is at least once);
4. process (here: print one line per event) and answer 2xx quickly.

The secret comes from WAYBILL_RECEIVER_SECRET, or from the file named by
WAYBILL_RECEIVER_SECRET_FILE (which must not be readable by group or others) — never from argv. The
file may hold several secrets, one per line, for a rotation's grace period.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from dispatcher import signing
from waybill.log import get_logger

DEDUP_SIZE = 100_000


def load_secrets(env: dict[str, str] | None = None) -> list[str]:
    """The secrets to verify with, from the environment or a 0600 file. Raises ValueError."""
    env = dict(os.environ) if env is None else env
    if env.get("WAYBILL_RECEIVER_SECRET"):
        text = env["WAYBILL_RECEIVER_SECRET"]
    elif env.get("WAYBILL_RECEIVER_SECRET_FILE"):
        path = Path(env["WAYBILL_RECEIVER_SECRET_FILE"])
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"{path} is readable by group or others: chmod 600 it")
        text = path.read_text()
    else:
        raise ValueError("set WAYBILL_RECEIVER_SECRET or WAYBILL_RECEIVER_SECRET_FILE (a 0600 file)")
    secrets = [s.strip() for s in text.split() if s.strip()]
    for s in secrets:
        signing.secret_key(s)  # raises ValueError for a malformed secret
    if not secrets:
        raise ValueError("no secret given")
    return secrets


class Receiver:
    """A raw ASGI app: POST any path with a signed webhook; GET /healthz."""

    def __init__(self, secrets: list[str], out: Any = None) -> None:
        self.secrets = secrets
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.out = out or sys.stdout
        self.log = get_logger()

    def verify(self, body: bytes, headers: dict[str, str]) -> str:
        error: signing.VerificationError | None = None
        for secret in self.secrets:
            try:
                return signing.verify(secret, body, headers, time.time())
            except signing.VerificationError as exc:
                error = exc
        assert error is not None
        raise error

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/healthz":
            return await answer(send, 200, {"ok": True, "seen": len(self.seen)})
        if scope["method"] != "POST":
            return await answer(send, 405, {"error": "POST a webhook"})
        body, headers = await read_request(scope, receive)
        try:
            msg_id = self.verify(body, headers)
        except signing.VerificationError as exc:
            self.log.warning(
                "webhook_receive_rejected", reason=str(exc), webhook_id=headers.get("webhook-id")
            )
            return await answer(send, 401, {"error": str(exc)})
        if msg_id in self.seen:
            self.log.info("webhook_receive_duplicated", webhook_id=msg_id)
            return await answer(send, 200, {"duplicate": True})
        self.seen[msg_id] = None
        if len(self.seen) > DEDUP_SIZE:
            self.seen.popitem(last=False)
        event = json.loads(body)
        print(
            f"webhook {event['eventType']:<20} {msg_id}  {json.dumps(event['data'], separators=(',', ':'))}",
            file=self.out,
            flush=True,
        )
        return await answer(send, 200, {"ok": True})


async def read_request(scope: dict, receive: Any) -> tuple[bytes, dict[str, str]]:
    """An ASGI request's whole body and its headers (names lower-case, as ASGI gives them)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks), {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def answer(send: Any, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve(host: str, port: int) -> int:
    """Run the receiver until SIGINT/SIGTERM, then exit 0 (uvicorn would re-raise the signal)."""
    import asyncio
    import contextlib
    import signal

    import uvicorn

    from waybill import log

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override] - our handlers below
            yield

    log.configure("receiver")
    secrets = load_secrets()
    config = uvicorn.Config(
        Receiver(secrets), host=host, port=port, http="httptools", log_level="warning", access_log=False,
        lifespan="off",
    )  # fmt: skip
    server = Server(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        log.get_logger().info("webhook_receiver_started", host=host, port=port, secrets=len(secrets))
        await server.serve()

    asyncio.run(main())
    return 0 if server.started else 1
