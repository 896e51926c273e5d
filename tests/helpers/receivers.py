#!/usr/bin/env python3
"""Loopback receivers for notification tests: a minimal SMTP server and an HTTP server.

Usage: receivers.py OUTDIR
Binds 127.0.0.1 on free ports, writes "SMTP_PORT HTTP_PORT" to OUTDIR/ports, then stores
each mail as OUTDIR/mail-N.txt and each POST body as OUTDIR/post-N.json. A POST to a path
containing "fail" is answered 500. Exits after 10 minutes at the latest.
"""
import http.server
import os
import socketserver
import sys
import threading

out = sys.argv[1]
counter = {"mail": 0, "post": 0}
lock = threading.Lock()


def store(kind, data):
    with lock:
        counter[kind] += 1
        name = os.path.join(out, "%s-%d.%s" % (kind, counter[kind], "txt" if kind == "mail" else "json"))
    with open(name + ".tmp", "wb") as f:
        f.write(data)
    os.rename(name + ".tmp", name)


class SMTP(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.reply("220 localhost test SMTP")
        rcpts, sender = [], None
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode(errors="replace").strip()
            up = cmd.upper()
            if up.startswith("EHLO") or up.startswith("HELO"):
                self.reply("250 localhost")
            elif up.startswith("MAIL FROM"):
                sender = cmd[10:]
                self.reply("250 OK")
            elif up.startswith("RCPT TO"):
                rcpts.append(cmd[8:])
                self.reply("250 OK")
            elif up == "DATA":
                self.reply("354 go ahead")
                body = b""
                while True:
                    l = self.rfile.readline()
                    if not l or l in (b".\r\n", b".\n"):
                        break
                    body += l
                store("mail", ("FROM %s\nTO %s\n" % (sender, ",".join(rcpts))).encode() + body)
                self.reply("250 queued")
            elif up == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 OK")


class HTTP(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        if "fail" in self.path:
            self.send_response(500)
        else:
            store("post", body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class TCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


smtp = TCP(("127.0.0.1", 0), SMTP)
web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HTTP)
for srv in (smtp, web):
    threading.Thread(target=srv.serve_forever, daemon=True).start()
with open(os.path.join(out, "ports.tmp"), "w") as f:
    f.write("%d %d\n" % (smtp.server_address[1], web.server_address[1]))
os.rename(os.path.join(out, "ports.tmp"), os.path.join(out, "ports"))
threading.Event().wait(600)
