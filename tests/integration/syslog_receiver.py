#!/usr/bin/python3
"""A minimal RFC 5425 receiver (syslog over TLS) for vigil's integration tests.

  syslog_receiver.py --port P --cert server.pem --key server.key --out FILE
                     [--ready FILE]

Listens on 127.0.0.1:P with TLS (1.2 or later; no client certificate asked
for), reads octet-counted frames ("MSG-LEN SP SYSLOG-MSG", RFC 5425 §4.3)
from any number of connections, and appends each SYSLOG-MSG to --out as one
line (flushed at once, so a test can poll the file). A message holding a
newline is written with the newline as the two characters "\\n" so that one
line is always one message; a malformed frame (no length, a leading zero, a
length over 1 MiB, no SP) ends that connection and is reported on stderr.

--ready is created once the socket listens. Handshake failures (a client
refusing our certificate, say) are reported on stderr, one line each, as
"handshake failed: REASON". SIGTERM/SIGINT end it.
"""

import argparse
import os
import signal
import socket
import ssl
import sys
import threading

MAX_FRAME = 1 << 20

write_lock = threading.Lock()


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def serve_conn(ctx, raw, out):
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        log("handshake failed: %s" % e)
        raw.close()
        return
    log("connection: %s %s" % (conn.version(), conn.cipher()[0]))
    buf = b""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while True:
                sp = buf.find(b" ", 0, 8)
                if sp < 0:
                    if len(buf) >= 8 or (buf and not buf.isdigit()):
                        log("bad frame: no MSG-LEN in %r" % buf[:16])
                        return
                    break
                digits = buf[:sp]
                if not digits.isdigit() or digits.startswith(b"0"):
                    log("bad frame: MSG-LEN %r" % digits[:16])
                    return
                n = int(digits)
                if n > MAX_FRAME:
                    log("bad frame: MSG-LEN %d too large" % n)
                    return
                if len(buf) < sp + 1 + n:
                    break
                msg = buf[sp + 1 : sp + 1 + n]
                buf = buf[sp + 1 + n :]
                line = msg.replace(b"\\", b"\\\\").replace(b"\n", b"\\n") if b"\n" in msg else msg
                with write_lock:
                    out.write(line + b"\n")
                    out.flush()
    except (ssl.SSLError, OSError) as e:
        log("connection ended: %s" % e)
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(16)
    out = open(args.out, "ab")
    if args.ready:
        open(args.ready, "w").close()
    log("listening on 127.0.0.1:%d" % args.port)
    try:
        while True:
            raw, _ = ls.accept()
            threading.Thread(target=serve_conn, args=(ctx, raw, out), daemon=True).start()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
