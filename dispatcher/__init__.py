"""The webhook dispatcher: turns PENDING outbox rows (webhooks.deliveries) into signed HTTP POSTs.

daemon.py   the asyncio loop: wake (LISTEN/NOTIFY, sweep, next due time), claim, POST, record, stop
queries.sql every statement the daemon runs, each a thin call to a webhooks.* function
signing.py  Standard Webhooks headers (and the receiver's verification)
guard.py    the SSRF guard: resolve once, refuse private addresses, connect to the checked IP
client.py   the HTTP POST (10 s timeout, no redirects) and its outcome classes
metrics.py  /healthz and Prometheus /metrics
receiver.py `waybill receiver`: the example consumer (verifies, dedups, prints)
"""
