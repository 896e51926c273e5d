#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that injects network faults between a client and a server.

Usage: faultproxy.py DIR TARGET_PORT   (see faultproxy.sh, which starts and drives it)

The mode is read from DIR/mode (one line) whenever it changes; every connection follows it:
  pass        forward both ways
  drop        reset every open connection and every new one at once
  stall       accept, read what comes, never answer (open connections stop forwarding too)
  http500 N   answer the next N connections' first request with "HTTP/1.1 500" and close
              them (the line is rewritten with the count left; at 0 it becomes pass)
  cut BYTES   forward, but reset each connection once the client has sent BYTES bytes on it
The most connections open at once since the last read is kept in DIR/stats.
"""
import os
import select
import socket
import struct
import sys
import threading
import time

DIR, TARGET = sys.argv[1], int(sys.argv[2])
MODE_FILE, STATS_FILE = os.path.join(DIR, "mode"), os.path.join(DIR, "stats")
lock = threading.Lock()
state = {"open": 0, "mtime": None, "mode": ["pass"]}


def mode():
    """The current mode as a list of words, re-read when the file changes."""
    try:
        mtime = os.stat(MODE_FILE).st_mtime_ns
    except FileNotFoundError:
        return ["pass"]
    with lock:
        if mtime != state["mtime"]:
            with open(MODE_FILE) as f:
                state["mode"] = (f.read().split() or ["pass"])
            state["mtime"] = mtime
        return list(state["mode"])


def take_500():
    """Consumes one of the http500 answers; True when this connection gets a 500."""
    with lock:
        words = state["mode"]
        if len(words) != 2 or words[0] != "http500":
            return False
        left = int(words[1]) - 1
        text = f"http500 {left}\n" if left > 0 else "pass\n"
        with open(MODE_FILE + ".tmp", "w") as f:
            f.write(text)
        os.replace(MODE_FILE + ".tmp", MODE_FILE)
        state["mode"] = text.split()
        state["mtime"] = os.stat(MODE_FILE).st_mtime_ns
        return True


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def count(delta):
    with lock:
        state["open"] += delta
        # The file holds the figure: faultproxy.sh stat resets it by writing 0.
        try:
            with open(STATS_FILE) as f:
                seen = int(f.read().strip() or 0)
        except (OSError, ValueError):
            seen = 0
        if state["open"] > seen:
            with open(STATS_FILE, "w") as f:
                f.write(f"{state['open']}\n")


def answer_500(client):
    data = b""
    client.settimeout(10)
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
        client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                       b"Content-Length: 14\r\nConnection: close\r\n\r\ninjected fault")
    except OSError:
        pass
    client.close()


def serve(client):
    words = mode()
    if words[0] == "drop":
        reset(client)
        return
    if words[0] == "http500" and take_500():
        answer_500(client)
        return
    try:
        upstream = socket.create_connection(("127.0.0.1", TARGET), timeout=10)
    except OSError:
        reset(client)
        return
    upstream.settimeout(None)
    # A client that closes a connection and opens the next one at once is seen here as two
    # sockets; give the closing one's thread time to notice before counting the new one.
    time.sleep(0.05)
    count(1)
    sent = 0
    graceful = False
    try:
        while True:
            words = mode()
            if words[0] == "drop":
                break
            ready, _, _ = select.select([client, upstream], [], [], 0.1)
            if words[0] == "stall":
                if client in ready and not client.recv(65536):
                    break
                continue
            for s in ready:
                data = s.recv(262144)
                if not data:
                    graceful = True
                    raise EOFError
                other = upstream if s is client else client
                if s is client and words[0] == "cut":
                    if sent + len(data) > int(words[1]):
                        raise ConnectionResetError
                    sent += len(data)
                other.sendall(data)
    except (OSError, EOFError):
        pass
    finally:
        count(-1)
        if graceful:  # one side closed: close the other one the same way (FIN, not RST)
            client.close()
            upstream.close()
        else:
            reset(client)
            reset(upstream)


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    with open(STATS_FILE, "w") as f:
        f.write("0\n")
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


main()
