#!/usr/bin/env python3
"""A webhook receiver for the specs.

Usage: webhook_receiver.py SECRET LOG PORT_FILE FAIL

Checks each POST's X-Uidcast-Signature (HMAC-SHA256 of the body under SECRET), appends one
JSON line per request to LOG ({"status", "signature_ok", "event"}), answers 500 to the first
FAIL requests and 200 after, and writes the port it listens on to PORT_FILE.
"""
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading

secret, log_path, port_path, fail = sys.argv[1].encode(), sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = 0
lock = threading.Lock()  # requests come on several kept-alive connections at once


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(self.headers.get("X-Uidcast-Signature", ""), expected)
        with lock:
            seen += 1
            status = 500 if seen <= fail else 200
            with open(log_path, "a") as log:
                log.write(json.dumps({"status": status, "signature_ok": ok, "event": json.loads(body)}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
with open(port_path + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_path + ".tmp", port_path)
server.serve_forever()
