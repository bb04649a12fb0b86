"""A webhook receiver for the tests: every POST is verified with the
Standard Webhooks library (PyPI `standardwebhooks`), independent of keysd,
and recorded as one JSON line.

    python webhook_receiver.py PORT_FILE LOG_FILE SECRETS_FILE CONTROL_FILE

It listens on 127.0.0.1 on a free port, written to PORT_FILE. SECRETS_FILE
holds the endpoint's secrets, one per line (read at each request; the test
writes it once the endpoint exists). CONTROL_FILE, read at each request,
says how to answer: a status code (`200`, `500`, …), optionally followed by
a delay in seconds (`200 3`). Each line of LOG_FILE is
{"id", "timestamp", "type", "verified", "answered", "signatures", "data"}.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT_FILE, LOG_FILE, SECRETS_FILE, CONTROL_FILE = sys.argv[1:5]
LOCK = threading.Lock()


def read(path, default):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return default


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        verified, payload = False, None
        for secret in read(SECRETS_FILE, "").split():
            try:
                payload = Webhook(secret).verify(body, headers)
                verified = True
                break
            except WebhookVerificationError:
                continue
        control = (read(CONTROL_FILE, "200").split() or ["200"])
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
        }
        with LOCK:
            with open(LOG_FILE, "a") as log:
                log.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
with open(PORT_FILE + ".tmp", "w") as handle:
    handle.write(str(server.server_address[1]))
import os

os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
