#!/usr/bin/env python3
"""A local HTTP sink for the worker's integration tests and benchmarks.

    http_sink.py PORTFILE LOGFILE [CERTFILE KEYFILE [CLIENT_CA]]

Listens on 127.0.0.1 (a free port, written to PORTFILE once listening;
HTTPS when given a certificate; with CLIENT_CA, only clients with a
certificate it signed get through the handshake) and appends one JSON line
per request to LOGFILE: time, method, path, headers, body, and the common
name of the client's certificate, if any.  The path chooses the answer:

    /ok/...               200
    /status/CODE/...      CODE
    /flaky/N/...          503 for the first N requests of a webhook-id, then 200
    /slow/SECONDS/...     waits, then 200
    /retry-after/S/...    429 with Retry-After: S for the first request of an id, then 200
    /redirect/...         302 to /ok/...
    /redirect-loop/...    302 to itself
    /redirect-to/URL      302 to URL (percent-encoded in the path)
    /big/BYTES/...        200 with a body of BYTES bytes
    /redirect-code/CODE/URL  CODE (a 3xx) to URL (percent-encoded in the path)
    /redirect-raw/...     302 to /ok/café, the header in Latin-1 (one byte 0xe9)
    /latin1/...           200 with the Latin-1 body "café" (0x63 0x61 0x66 0xe9)
    /utf8/N/...           200 with "x" and N times "é" in UTF-8 (2 bytes each)
"""
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

portfile, logfile = sys.argv[1], sys.argv[2]
lock = threading.Lock()
seen = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, extra=None, body=b"ok"):
        self.send_response(code)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = {
            "time": time.time(),
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if peer:
            rec["client"] = dict(x[0] for x in peer.get("subject", ())).get("commonName")
        with lock:
            with open(logfile, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        parts = self.path.strip("/").split("/")
        kind = parts[0] if parts else ""
        key = (kind, self.headers.get("webhook-id", ""))
        with lock:
            seen[key] = seen.get(key, 0) + 1
            count = seen[key]
        if kind == "status":
            self.answer(int(parts[1]))
        elif kind == "flaky":
            self.answer(503 if count <= int(parts[1]) else 200)
        elif kind == "slow":
            time.sleep(float(parts[1]))
            self.answer(200)
        elif kind == "retry-after":
            if count == 1:
                self.answer(429, {"Retry-After": parts[1]})
            else:
                self.answer(200)
        elif kind == "redirect":
            self.answer(302, {"Location": "/ok/" + "/".join(parts[1:])}, b"")
        elif kind == "redirect-loop":
            self.answer(302, {"Location": self.path}, b"")
        elif kind == "redirect-to":
            self.answer(302, {"Location": unquote(parts[1])}, b"")
        elif kind == "big":
            self.answer(200, None, b"x" * int(parts[1]))
        elif kind == "redirect-code":
            self.answer(int(parts[1]), {"Location": unquote(parts[2])}, b"")
        elif kind == "redirect-raw":
            # http.server encodes header values in Latin-1
            self.answer(302, {"Location": "/ok/caf\u00e9"}, b"")
        elif kind == "latin1":
            self.answer(200, {"Content-Type": "text/plain; charset=iso-8859-1"}, "café".encode("latin-1"))
        elif kind == "utf8":
            self.answer(200, {"Content-Type": "text/plain; charset=utf-8"},
                        ("x" + "\u00e9" * int(parts[1])).encode("utf-8"))
        else:
            self.answer(200)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


srv = Server(("127.0.0.1", 0), Handler)
if len(sys.argv) > 4:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    if len(sys.argv) > 5:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(sys.argv[5])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
