#!/usr/bin/env python3
"""Loopback webhook receiver for notification tests (tests/e2e/notify_*.sh).

Usage: hook_receiver.py OUTDIR
Binds 127.0.0.1 on a free port, writes it to OUTDIR/port, then keeps each POST's headers and
its exact body as OUTDIR/hook-N.headers and OUTDIR/hook-N.body (the headers file is written
last). Answers 200. Exits after 10 minutes at the latest.
"""
import http.server, os, sys, threading
out, n, lock = sys.argv[1], [0], threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            n[0] += 1
            base = os.path.join(out, "hook-%d" % n[0])
        open(base + ".body", "wb").write(body)
        open(base + ".headers.tmp", "w").write("".join("%s: %s\n" % kv for kv in self.headers.items()))
        os.rename(base + ".headers.tmp", base + ".headers")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(os.path.join(out, "port.tmp"), "w").write(str(srv.server_address[1]))
os.rename(os.path.join(out, "port.tmp"), os.path.join(out, "port"))
threading.Timer(600, srv.shutdown).start()
srv.serve_forever()
