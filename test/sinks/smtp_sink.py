#!/usr/bin/env python3
"""A local SMTP sink for the worker's integration tests (aiosmtpd).

    smtp_sink.py PORTFILE LOGFILE [AUTHLOG [CERTFILE KEYFILE]]

Listens on 127.0.0.1 and appends one JSON line per message to LOGFILE:
envelope sender, recipients and the raw message.  Recipients whose local
part starts with "reject" get a permanent 550; "busy" a transient 451.
With AUTHLOG, the server offers AUTH without TLS (as a server that lost
its STARTTLS to a man in the middle would) and appends each login and
password it receives to AUTHLOG ("-": no AUTH).  It offers STARTTLS only
when given a certificate, and then requires it.
"""
import json
import os
import socket
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

portfile, logfile = sys.argv[1], sys.argv[2]
authlog = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
tls = {}
if len(sys.argv) > 5:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    tls = {"tls_context": ctx, "require_starttls": True}


def authenticator(server, session, envelope, mechanism, auth_data):
    with open(authlog, "a", encoding="utf-8") as f:
        f.write(json.dumps({"mechanism": mechanism,
                            "login": auth_data.login.decode("utf-8", "replace"),
                            "password": auth_data.password.decode("utf-8", "replace")}) + "\n")
    return AuthResult(success=True)



class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("reject"):
            return "550 5.1.1 no such user"
        if local.startswith("busy"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rec = {
            "time": time.time(),
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
        }
        with open(logfile, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return "250 Message accepted"


s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
if authlog:
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port,
                     authenticator=authenticator, auth_require_tls=False, **tls)
else:
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port, **tls)
ctl.start()
with open(portfile + ".tmp", "w") as f:
    f.write(str(port))
os.rename(portfile + ".tmp", portfile)
try:
    while True:
        time.sleep(3600)
finally:
    ctl.stop()
