#!/usr/bin/env python3
"""An HTTP proxy in front of an S3 server (moto) that lies about what it stored.

Usage: s3liar.py DIR TARGET_PORT    (writes DIR/port once it listens on 127.0.0.1)

Requests are passed on unchanged (the Host header included, so SigV4 signatures still
match); answers come back unchanged unless DIR/mode (read on every request) says:
  pass          tell the truth
  etag N        from the Nth multipart part upload on, answer with an ETag that is not the
                MD5 of the part (as a server that stored other bytes would)
  short N       from the Nth HEAD of a pack (data/xx/...) on, report one byte less than
                the object holds (a short write)
Counters restart when the mode file changes.
"""
import http.client
import http.server
import os
import sys
import threading

DIR, TARGET = sys.argv[1], int(sys.argv[2])
MODE = os.path.join(DIR, "mode")
lock = threading.Lock()
state = {"mtime": None, "parts": 0, "heads": 0}


def mode():
    try:
        mtime = os.stat(MODE).st_mtime_ns
        with open(MODE) as f:
            words = f.read().split() or ["pass"]
    except FileNotFoundError:
        return ["pass"]
    with lock:
        if mtime != state["mtime"]:
            state.update(mtime=mtime, parts=0, heads=0)
    return words


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        words = mode()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
        conn = http.client.HTTPConnection("127.0.0.1", TARGET, timeout=120)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out = [(k, v) for k, v in resp.getheaders()
               if k.lower() not in ("transfer-encoding", "connection", "content-length")]
        with lock:
            if self.command == "PUT" and "partNumber=" in self.path:
                state["parts"] += 1
                lie_etag = words[0] == "etag" and state["parts"] >= int(words[1])
            else:
                lie_etag = False
            pack_head = self.command == "HEAD" and "/data/" in self.path and "/.tmp-" not in self.path
            if pack_head:
                state["heads"] += 1
            lie_size = pack_head and words[0] == "short" and state["heads"] >= int(words[1])
        if lie_etag:
            out = [(k, '"0123456789abcdef0123456789abcdef"' if k.lower() == "etag" else v) for k, v in out]
        self.send_response(resp.status, resp.reason)
        for k, v in out:
            self.send_header(k, v)
        size = int(resp.getheader("Content-Length") or len(data))
        self.send_header("Content-Length", str(size - 1 if lie_size and size > 0 else
                                               size if self.command == "HEAD" else len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
server.serve_forever()
