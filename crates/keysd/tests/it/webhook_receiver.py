"""A webhook receiver for the tests: every POST is verified with the
Standard Webhooks library (PyPI `standardwebhooks`), independent of keysd,
and recorded as one JSON line.

    python webhook_receiver.py PORT_FILE LOG_FILE SECRETS_FILE CONTROL_FILE

It listens on 127.0.0.1 on a free port, written to PORT_FILE. SECRETS_FILE
holds the endpoints' secrets, one per line (read at each request; the test
writes it once the endpoint exists); a request verifies when one of them
verifies it. CONTROL_FILE, read at each request, says how to answer: a
status code (`200`, `500`, …), optionally followed by a delay in seconds
(`200 3`). An unverified request is answered 400.

Each line of LOG_FILE is {"id", "timestamp", "signatures", "type", "data",
"at", "verified", "answered", "path", "secrets", "received_at"}: `secrets`
is how many secrets were tried (0: none was configured yet), `received_at`
the receiver's clock (Unix seconds) when the request arrived. A line is
written once the answer is decided (after the delay). LOG_FILE.arrivals
gets the webhook-id of each request as soon as it arrives, before any
delay: it tells a test an attempt is in flight.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT_FILE, LOG_FILE, SECRETS_FILE, CONTROL_FILE = sys.argv[1:5]
ARRIVALS_FILE = LOG_FILE + ".arrivals"
LOCK = threading.Lock()


def read(path, default):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return default


def append(path, line):
    with LOCK:
        with open(path, "a") as handle:
            handle.write(line + "\n")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        received_at = time.time()
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        append(ARRIVALS_FILE, json.dumps(headers.get("webhook-id")))
        verified, payload = False, None
        secrets = read(SECRETS_FILE, "").split()
        for secret in secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
                verified = True
                break
            except WebhookVerificationError:
                continue
        control = read(CONTROL_FILE, "200").split() or ["200"]
        status = int(control[0])
        if len(control) > 1:
            time.sleep(float(control[1]))
        if not verified:
            status = 400
        record = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signatures": headers.get("webhook-signature", "").split(),
            "type": payload.get("type") if payload else None,
            "data": payload.get("data") if payload else None,
            "at": payload.get("timestamp") if payload else None,
            "verified": verified,
            "answered": status,
            "path": self.path,
            "secrets": len(secrets),
            "received_at": received_at,
        }
        append(LOG_FILE, json.dumps(record))
        try:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
        except OSError:
            # The sender is gone (a test killed it mid-attempt).
            pass

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # Several replicas, each with attempts in flight, connect at once.
    request_queue_size = 256
    daemon_threads = True


server = Server(("127.0.0.1", 0), Receiver)
with open(PORT_FILE + ".tmp", "w") as handle:
    handle.write(str(server.server_address[1]))
os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
