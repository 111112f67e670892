#!/usr/bin/env python3
"""A downstream mail server for moat's end-to-end tests, built on aiosmtpd (a peer nobody on
the project wrote). Writes every accepted message to DIR/<n>.eml as

    X-Envelope-From: <sender>
    X-Envelope-To: <rcpt>[, <rcpt>...]
    <blank line>
    <the message content exactly as received>

and keeps DIR/connections (the number of SMTP connections accepted so far) up to date.
Options make it misbehave on purpose: --tempfail-first N answers 451 to the first N DATA
commands' end of data; --reject-rcpt SUBSTR answers 550 5.1.1 to matching recipients.
--tls-cert/--tls-key offer STARTTLS (TLS 1.2+, or 1.3 only with --tls13-only); then every message file gets a third
envelope line "X-Envelope-TLS: <protocol> <cipher>[ resumed]" or "X-Envelope-TLS: none", and the
SNI host names clients sent are appended to DIR/sni, one per line.
Runs until --duration seconds have passed (it always stops by itself).
"""
import argparse
import asyncio
import os
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, directory, tempfail_first, reject_rcpt, tls=False):
        self.directory = directory
        self.tls = tls
        self.tempfail_left = tempfail_first
        self.reject_rcpt = reject_rcpt
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject_rcpt and self.reject_rcpt in address:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.tempfail_left > 0:
                self.tempfail_left -= 1
                return "451 4.3.0 Try again later"
            self.count += 1
            n = self.count
        sender = envelope.mail_from
        if sender == "<>":  # aiosmtpd keeps the null sender's brackets
            sender = ""
        head = "X-Envelope-From: <%s>\r\nX-Envelope-To: %s\r\n" % (
            sender, ", ".join("<%s>" % r for r in envelope.rcpt_tos))
        if self.tls:
            tls = "none"
            ssl_object = (session.ssl or {}).get("ssl_object")
            if ssl_object is not None:
                tls = "%s %s" % (ssl_object.version(), ssl_object.cipher()[0])
                if ssl_object.session_reused:
                    tls += " resumed"
            head += "X-Envelope-TLS: %s\r\n" % tls
        head += "\r\n"
        tmp = os.path.join(self.directory, ".%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(head.encode())
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.directory, "%d.eml" % n))
        return "250 2.0.0 Ok: queued as S%d" % n


class CountingController(Controller):
    def __init__(self, handler, directory, tls_context=None, **kwargs):
        super().__init__(handler, **kwargs)
        self.directory = directory
        self.tls_context = tls_context
        self.connections = 0

    def factory(self):
        controller = self

        class CountingSMTP(SMTP):
            def connection_made(self, transport):
                controller.connections += 1
                path = os.path.join(controller.directory, "connections")
                with open(path + ".tmp", "w") as f:
                    f.write(str(controller.connections))
                os.rename(path + ".tmp", path)
                super().connection_made(transport)

        return CountingSMTP(self.handler, decode_data=False, enable_SMTPUTF8=True,
                            tls_context=self.tls_context)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--duration", type=float, default=120)
    p.add_argument("--tempfail-first", type=int, default=0)
    p.add_argument("--reject-rcpt", default="")
    p.add_argument("--tls-cert", default="")
    p.add_argument("--tls-key", default="")
    p.add_argument("--tls13-only", action="store_true")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    context = None
    if a.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = (ssl.TLSVersion.TLSv1_3 if a.tls13_only
                                   else ssl.TLSVersion.TLSv1_2)
        context.load_cert_chain(a.tls_cert, a.tls_key or a.tls_cert)

        def record_sni(ssl_object, server_name, ssl_context):
            with open(os.path.join(a.dir, "sni"), "a") as f:
                f.write("%s\n" % (server_name or ""))

        context.sni_callback = record_sni
    handler = Handler(a.dir, a.tempfail_first, a.reject_rcpt, tls=context is not None)
    controller = CountingController(handler, a.dir, tls_context=context, hostname="127.0.0.1",
                                    port=a.port)
    controller.start()
    with open(os.path.join(a.dir, "ready"), "w") as f:
        f.write("ready\n")
    try:
        time.sleep(a.duration)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
