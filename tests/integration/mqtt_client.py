#!/usr/bin/python3
"""MQTT and TLS probes for vigil's integration tests.

Run with Debian's /usr/bin/python3 (python3-paho-mqtt 1.6.1). Every command
prints one JSON object on stdout describing what happened and exits 0 when
it could observe an outcome (even a refusal: the shell test judges it), 3
on a helper error.

  session   connect (MQTT 3.1.1 over TLS with a client certificate), then in
            order: subscribe to each --sub filter (waiting for its SUBACK),
            publish each --pub payload to --topic (QoS 1: waiting for its
            PUBACK), then wait for --expect N messages.
            -> {"connack": rc, "granted": [[qos...], ...], "puback": [bool...],
                "messages": [{"topic": t, "payload": text}, ...], "error": ...,
                "closed_by_server": bool (with --linger)}
  tls       a bare TLS handshake with --max-version 1.2 or 1.3
            -> {"handshake": "ok"|"failed", "version": ..., "error": ...}
  probe     raw MQTT bytes (CONNECT with --keepalive, a PUBLISH of
            --publish-size bytes at --publish-qos, --send-hex), then watch
            up to --wait s for the server to close the connection
            -> {"connack": rc, "received": hex, "closed_after": s|null}
"""

import argparse
import json
import socket
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt


def tls_context(args, max_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=args.ca)
    ctx.check_hostname = True
    if args.cert:
        ctx.load_cert_chain(certfile=args.cert, keyfile=args.key)
    if max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif max_version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def cmd_tls(args):
    res = {"handshake": "failed"}
    ctx = tls_context(args, args.max_version)
    try:
        with socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                res["version"] = s.version()
                # In TLS 1.3 the server judges the client certificate after
                # the client's handshake is done: read to learn the verdict.
                s.settimeout(1.0)
                try:
                    data = s.recv(1)
                    res["handshake"] = "ok" if data != b"" else "closed"
                except socket.timeout:
                    res["handshake"] = "ok"
    except (ssl.SSLError, OSError) as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(res))
    return 0


def cmd_session(args):
    res = {"connack": None, "granted": [], "puback": [], "messages": [], "error": None}
    lock = threading.RLock()  # on_publish may run inside publish() on this thread
    connected = threading.Event()
    disconnected = threading.Event()
    subacks = {}
    pubacks = {}
    got_message = threading.Condition(lock)

    client = mqtt.Client(client_id=args.id, clean_session=True, protocol=mqtt.MQTTv311)
    client.tls_set_context(tls_context(args))

    def on_connect(c, userdata, flags, rc):
        res["connack"] = rc
        connected.set()

    def on_disconnect(c, userdata, rc):
        disconnected.set()
        connected.set()

    def on_subscribe(c, userdata, mid, granted_qos):
        with lock:
            subacks[mid] = list(granted_qos)
        ev = sub_events.get(mid)
        if ev:
            ev.set()

    def on_publish(c, userdata, mid):
        with lock:
            pubacks[mid] = True
        ev = pub_events.get(mid)
        if ev:
            ev.set()

    def on_message(c, userdata, msg):
        with got_message:
            res["messages"].append(
                {"topic": msg.topic, "qos": msg.qos, "payload": msg.payload.decode("utf-8", "replace")}
            )
            got_message.notify_all()

    sub_events, pub_events = {}, {}
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message

    try:
        client.connect("127.0.0.1", args.port, keepalive=30)
    except (ssl.SSLError, OSError) as e:
        res["error"] = "connect: %s: %s" % (type(e).__name__, e)
        print(json.dumps(res))
        return 0
    def network_loop():
        # paho's own loop_start() thread dies silently on an SSL error (a
        # TLS 1.3 client certificate is judged after the client's handshake);
        # this one records it and wakes the waiters.
        try:
            client.loop_forever()
        except Exception as e:
            if not res["error"]:
                res["error"] = "network: %s: %s" % (type(e).__name__, e)
        finally:
            disconnected.set()
            connected.set()
            for ev in list(sub_events.values()) + list(pub_events.values()):
                ev.set()

    loop = threading.Thread(target=network_loop, daemon=True)
    loop.start()
    try:
        if not connected.wait(args.timeout):
            res["error"] = "no CONNACK within %ss" % args.timeout
            return 0
        if res["connack"] is None:
            res["error"] = "connection closed before CONNACK"
            return 0
        if res["connack"] != 0:
            return 0
        for f in args.sub:
            ev = threading.Event()
            rc, mid = client.subscribe(f, qos=args.sub_qos)
            sub_events[mid] = ev
            if mid in subacks:
                ev.set()
            if rc != mqtt.MQTT_ERR_SUCCESS or not ev.wait(args.timeout) or mid not in subacks:
                res["error"] = res["error"] or "no SUBACK for %s" % f
                return 0
            res["granted"].append(subacks[mid])
        for p in args.pub:
            ev = threading.Event()
            with lock:
                info = client.publish(args.topic, p, qos=args.qos)
                pub_events[info.mid] = ev
                if info.mid in pubacks:
                    ev.set()
            # on_publish fires on PUBACK for QoS 1 (on sending for QoS 0).
            acked = ev.wait(args.timeout) and info.mid in pubacks
            res["puback"].append(bool(acked))
            if disconnected.is_set():
                res["error"] = "disconnected by the server"
                return 0
        if args.expect:
            deadline = time.monotonic() + args.timeout
            with got_message:
                while len(res["messages"]) < args.expect and time.monotonic() < deadline:
                    got_message.wait(0.1)
        elif args.linger:
            # Stay connected (paho sends PINGREQs) until the time is up or
            # the server closes the connection.
            res["closed_by_server"] = disconnected.wait(args.linger)
        return 0
    finally:
        try:
            client.disconnect()
        except Exception:
            pass
        loop.join(args.timeout)
        print(json.dumps(res))


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id, keepalive):
    body = mqtt_str("MQTT") + bytes([4, 0x02]) + keepalive.to_bytes(2, "big") + mqtt_str(client_id)
    return b"\x10" + varint(len(body)) + body


def publish_packet(topic, payload, qos, packet_id=1):
    body = mqtt_str(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + varint(len(body)) + body


def cmd_probe(args):
    """Raw MQTT over TLS (or bare TCP with --no-tls), to watch the server's
    limits: how long until it closes, and what it sent before."""
    res = {"connack": None, "received": "", "closed_after": None, "error": None}
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    t0 = time.monotonic()
    s = raw
    try:
        if not args.no_tls:
            s = tls_context(args).wrap_socket(raw, server_hostname="127.0.0.1")
        if args.keepalive is not None:
            s.sendall(connect_packet(args.id, args.keepalive))
            hdr = b""
            while len(hdr) < 4:
                chunk = s.recv(4 - len(hdr))
                if not chunk:
                    break
                hdr += chunk
            res["connack"] = hdr[3] if len(hdr) == 4 and hdr[0] == 0x20 else None
            res["received"] += hdr.hex()
            t0 = time.monotonic()
        if args.publish_size is not None:
            payload = b"x" * args.publish_size
            s.sendall(publish_packet(args.topic, payload, args.publish_qos))
        if args.send_hex:
            s.sendall(bytes.fromhex(args.send_hex))
        s.settimeout(0.2)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError) as e:
                res["closed_after"] = round(time.monotonic() - t0, 2)
                res["error"] = "%s: %s" % (type(e).__name__, e)
                break
            if not data:
                res["closed_after"] = round(time.monotonic() - t0, 2)
                break
            res["received"] += data.hex()
    except (ssl.SSLError, OSError) as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
        res["closed_after"] = round(time.monotonic() - t0, 2)
    finally:
        s.close()
    print(json.dumps(res))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=10.0)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("session", "tls", "probe"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--ca", required=True)
        p.add_argument("--cert")
        p.add_argument("--key")
        p.add_argument("--id", default="")
    s = sub.choices["session"]
    s.add_argument("--sub", action="append", default=[])
    s.add_argument("--sub-qos", type=int, default=0)
    s.add_argument("--topic", default="")
    s.add_argument("--pub", action="append", default=[])
    s.add_argument("--qos", type=int, default=1)
    s.add_argument("--expect", type=int, default=0)
    s.add_argument("--linger", type=float, default=0.0)
    t = sub.choices["tls"]
    t.add_argument("--max-version", choices=("1.2", "1.3"), default=None)
    r = sub.choices["probe"]
    r.add_argument("--no-tls", action="store_true", help="bare TCP, never start TLS")
    r.add_argument("--keepalive", type=int, help="send CONNECT with this keepalive")
    r.add_argument("--publish-size", type=int, help="then a PUBLISH with this many payload bytes")
    r.add_argument("--publish-qos", type=int, default=1)
    r.add_argument("--topic", default="")
    r.add_argument("--send-hex", default="")
    r.add_argument("--wait", type=float, default=5.0, help="seconds to watch for the close")
    args = ap.parse_args()
    if args.cmd == "probe" and not args.topic:
        args.topic = "vigil/v1/d/%s/obs" % args.id
    if args.cmd == "session" and args.pub and not args.topic:
        args.topic = "vigil/v1/d/%s/obs" % args.id
    try:
        return {"session": cmd_session, "tls": cmd_tls, "probe": cmd_probe}[args.cmd](args)
    except Exception as e:  # a helper bug, not a vigil outcome
        print(json.dumps({"error": "helper: %s: %s" % (type(e).__name__, e)}))
        return 3


if __name__ == "__main__":
    sys.exit(main())
