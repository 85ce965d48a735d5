"""A real SMTP server on loopback for the notification channel tests (aiosmtpd).

    python smtp_server.py --port N [--cert C --key K] [--user U --password P]

--cert/--key: STARTTLS offered and required before MAIL. --user/--password: AUTH (PLAIN, LOGIN)
required; other credentials are refused with 535. Prints "READY <port>" once it accepts
connections, then one JSON line per accepted message: the envelope, whether it came over TLS,
who authenticated, and the message as Python's email parser (RFC 5322 policy) reads it: headers,
decoded body and the defects found. Runs until killed.
"""

import argparse
import asyncio
import email
import email.policy
import email.utils
import json
import ssl
import sys
import logging
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        headers = {name: str(msg[name]) for name in
                   ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                    "Content-Type", "Content-Transfer-Encoding") if msg[name] is not None}
        defects = [str(d) for d in msg.defects]
        for name in headers:
            defects += [f"{name}: {d}" for d in msg[name].defects]
        date_ok = False
        try:
            date_ok = email.utils.parsedate_to_datetime(headers.get("Date", "")) is not None
        except (TypeError, ValueError):
            pass
        auth = session.auth_data
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "auth": auth.decode() if isinstance(auth, bytes) else auth,
            "headers": headers,
            "body": msg.get_content(),
            "raw": raw.decode("utf-8", "replace"),
            "defects": defects,
            "date_ok": date_ok,
        }
        print(json.dumps(record), flush=True)
        return "250 Message accepted"


def main():
    # aiosmtpd 1.4 logs a warning about its own use of a deprecated attribute on every AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()

    kwargs = {}
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.user:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login == a.user.encode()
                  and auth_data.password == a.password.encode())
            return AuthResult(success=ok, handled=False, auth_data=a.user if ok else None)
        # Over plain text only when the test runs without TLS (aiosmtpd refuses it otherwise).
        kwargs.update(authenticator=authenticator, auth_required=True,
                      auth_require_tls=bool(a.cert))
    controller = Controller(Recorder(), hostname="127.0.0.1", port=a.port, **kwargs)
    controller.start()
    print(f"READY {a.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
