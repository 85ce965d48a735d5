"""A real HTTPS webhook receiver for the notification channel tests (http.server + ssl).

    python webhook_receiver.py --port N --cert C --key K --secret S [--tolerance 300]

Verifies every request the way a receiver should (docs: src/notification/README.md, "Signed
webhooks"): X-Ecomd-Signature is "t=<unix>,v1=<hex>", hex = HMAC-SHA256(secret, "<t>." + body);
a bad signature or a timestamp more than --tolerance seconds away is refused with 401; within the
window a request whose Idempotency-Key was already processed is answered 200 without processing
it again ("duplicate": a retry, or a replay of a captured request). Paths: POST /hook answers 200
when verified; /status/<n> answers n after verifying; /slow waits 5 s first. Prints
"READY <port>", then one JSON line per request: path, headers, body, verified, why, duplicate.
"""

import argparse
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--tolerance", type=int, default=300)
    a = p.parse_args()
    processed = set()  # Idempotency-Keys answered 2xx
    lock = threading.Lock()

    def verify(headers, body):
        fields = dict(part.split("=", 1) for part in
                      headers.get("X-Ecomd-Signature", "").split(",") if "=" in part)
        if "t" not in fields or "v1" not in fields:
            return False, "no signature"
        try:
            t = int(fields["t"])
        except ValueError:
            return False, "bad timestamp"
        if abs(time.time() - t) > a.tolerance:
            return False, "timestamp outside the tolerance window"
        want = hmac.new(a.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, fields["v1"]):
            return False, "signature mismatch"
        return True, ""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok, why = verify(self.headers, body)
            key = self.headers.get("Idempotency-Key", "")
            status = 200 if ok else 401
            if ok and self.path.startswith("/status/"):
                status = int(self.path.rsplit("/", 1)[1])
            with lock:
                duplicate = ok and key in processed
                if ok and 200 <= status < 300:
                    processed.add(key)
            print(json.dumps({"path": self.path, "headers": dict(self.headers.items()),
                              "body": body.decode("utf-8", "replace"), "verified": ok,
                              "why": why, "duplicate": duplicate}), flush=True)
            if self.path == "/slow":
                time.sleep(5)
            answer = json.dumps({"ok": ok, "why": why}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
