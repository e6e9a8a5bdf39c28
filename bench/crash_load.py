#!/usr/bin/python3
"""Load generator and checker for vigil's crash harness (bench/crash.sh).

Run with Debian's /usr/bin/python3 (python3-paho-mqtt 1.6.1).

  load    N devices (certificates already enrolled), one MQTT/TLS client
          each, publish QoS 1 heart-rate readings (LOINC 8867-4, /min) with
          up to --window PUBLISHes in flight per device, until the
          connection drops (the server was killed), --max-seconds pass, or
          SIGTERM/SIGINT. Exit 0 in all of these cases.

          Every reading is identifiable: reading number K of a device (K
          from --first-seq upwards) has the time T0 + K ms (--t0-ms; RFC
          3339 with milliseconds, unique per device) and the value
          40 + (K mod 250000) / 1000 (inside heart rate's 0..300 range and
          distinct for 250000 consecutive readings).

          Each PUBACK received appends one line "DEVICE<TAB>TIME<TAB>VALUE<TAB>K"
          to --acks (flushed line by line, so what was acknowledged before a
          kill is on disk). A reading is never resent: a reading published
          whose PUBACK did not arrive may or may not be stored. --ready is
          created once every device has had its CONNACK (or failed to);
          --stats gets one JSON object with per-device counts at exit.

  check   After a restart, compare what vigil holds with the acknowledgments.
          --map lists "CYCLE DEVICE PATIENT FIRST_SEQ" lines: in each cycle
          every device is assigned to a patient of its own, so a patient
          holds the readings of one device from one cycle only, fewer than
          the 1000 that one FHIR search page returns (_count=1000; 'next'
          links are followed if the server pages). Every patient's readings
          are read through GET /fhir/Observation (which opens each sealed
          row) and must number exactly the database's rows for it. Then:
            - every acknowledged reading (device, time) is present exactly
              once, with the value that was sent;
            - no reading is present twice (acknowledged or not);
            - every stored reading is one this device sent in this cycle
              (its time falls in the cycle's range, its value matches the
              encoding), so nothing was misattributed or altered;
            - no reading of these devices is stored for a patient that is
              not in the map;
            - per patient, the counts in the readings.store audit records
              add up to its rows (readings and their audit record commit in
              one transaction).
          A patient verified through the API in an earlier check is not
          fetched again while the fingerprint of its rows (SHA-256 over its
          readings' ids and sealed blobs, and its wrapped data keys) is
          unchanged: the API's answer is a function of those bytes, so the
          earlier verdict still holds. --full re-fetches every patient.
          State between checks is kept in --state (JSON).
          Prints a JSON summary line last; exits 1 when a check failed,
          2 on a harness error.
"""

import argparse
import calendar
import hashlib
import http.client
import json
import os
import re
import signal
import sqlite3
import ssl
import sys
import threading
import time
import urllib.parse

CODE = "8867-4"
UNIT = "/min"
VALUE_SPAN = 250000
STORED_RE = re.compile(r"stored (\d+) readings from ")


def reading_milli(k):
    """Reading K's value in thousandths: 40000 + (K mod 250000)."""
    return 40000 + k % VALUE_SPAN


def reading_value(k):
    # From its decimal text, so the double is the one nearest to it and
    # prints back as the same short decimal with any precision >= 6.
    m = reading_milli(k)
    return float("%d.%03d" % (m // 1000, m % 1000))


def milli(v):
    return int(round(v * 1000))


def fmt_time(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


_DAYS = {}


def parse_time(s):
    """RFC 3339 as vigil renders it (YYYY-MM-DDThh:mm:ss[.sss]Z) -> epoch ms."""
    if len(s) < 20 or s[10] not in "Tt" or s[4] != "-" or s[7] != "-" or s[13] != ":" or s[16] != ":":
        raise ValueError("not an RFC 3339 date-time: %r" % s)
    day = _DAYS.get(s[:10])
    if day is None:
        day = _DAYS[s[:10]] = calendar.timegm((int(s[0:4]), int(s[5:7]), int(s[8:10]), 0, 0, 0)) * 1000
    ms = day + (int(s[11:13]) * 3600 + int(s[14:16]) * 60 + int(s[17:19])) * 1000
    rest = s[19:]
    if rest.startswith("."):
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        ms += int((rest[1:i] + "000")[:3])
        rest = rest[i:]
    if rest not in ("Z", "z", "+00:00"):
        raise ValueError("unexpected time zone in %r" % s)
    return ms


# ---------------------------------------------------------------------------
# load


class AckLog:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="ascii")

    def write(self, dev, t, value, k):
        with self.lock:
            self.f.write("%s\t%s\t%r\t%d\n" % (dev, t, value, k))
            self.f.flush()


def run_device(args, dev, acklog, stats, stop, connected_cb):
    import paho.mqtt.client as mqtt

    st = stats[dev]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=args.ca)
    ctx.load_cert_chain(certfile=os.path.join(args.certs, dev + ".pem"),
                        keyfile=os.path.join(args.certs, dev + ".key"))
    client = mqtt.Client(client_id=dev, clean_session=True, protocol=mqtt.MQTTv311)
    client.tls_set_context(ctx)
    # The window is ours; paho must not hold messages back on its own.
    client.max_inflight_messages_set(max(args.window, 1) + 5)
    client.max_queued_messages_set(0)
    inflight = {}  # mid -> (time, value, k)
    early = set()  # PUBACKs seen before publish() returned their mid
    state = {"connack": None, "gone": False}

    def on_connect(c, u, flags, rc):
        state["connack"] = rc

    def on_disconnect(c, u, rc):
        state["gone"] = True

    def on_publish(c, u, mid):
        r = inflight.pop(mid, None)
        if r is None:
            early.add(mid)
            return
        acklog.write(dev, r[0], r[1], r[2])
        st["acked"] += 1

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    topic = "vigil/v1/d/%s/obs" % dev
    try:
        try:
            client.connect("127.0.0.1", args.port, keepalive=30)
            deadline = time.monotonic() + 10
            while state["connack"] is None and not state["gone"] and time.monotonic() < deadline:
                if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
        except (ssl.SSLError, OSError) as e:
            st["error"] = "connect: %s: %s" % (type(e).__name__, e)
            return
        finally:
            connected_cb()
        if state["connack"] != 0:
            st["error"] = "CONNACK %s" % state["connack"]
            return
        st["connected"] = True
        k = args.first_seq
        last_k = args.first_seq + args.max_per_device
        t_start = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            while len(inflight) < args.window and k < last_k and not state["gone"]:
                if args.rate > 0 and now < t_start + (k - args.first_seq) / args.rate:
                    break
                t = fmt_time(args.t0_ms + k)
                v = reading_value(k)
                payload = json.dumps({"code": CODE, "value": v, "unit": UNIT, "time": t})
                info = client.publish(topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    # Not sent (connection gone): it was never acknowledged.
                    state["gone"] = True
                    break
                st["published"] += 1
                if info.mid in early:
                    early.discard(info.mid)
                    acklog.write(dev, t, v, k)
                    st["acked"] += 1
                else:
                    inflight[info.mid] = (t, v, k)
                k += 1
            if state["gone"]:
                break
            rc = client.loop(timeout=0.01)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                st["error"] = "loop: %s" % mqtt.error_string(rc)
                break
            if state["gone"]:
                break
        st["unacked"] = len(inflight)
    except Exception as e:  # a TLS error on a killed server, and the like
        st["error"] = st.get("error") or "%s: %s" % (type(e).__name__, e)
        st["unacked"] = len(inflight)
    finally:
        try:
            client.disconnect()
        except Exception:
            pass
        try:
            client.socket() and client.socket().close()
        except Exception:
            pass


def cmd_load(args):
    devices = [d for d in args.devices.split(",") if d]
    acklog = AckLog(args.acks)
    stats = {d: {"connected": False, "published": 0, "acked": 0, "unacked": 0, "error": None}
             for d in devices}
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pending = [len(devices)]
    plock = threading.Lock()

    def connected_cb():
        with plock:
            pending[0] -= 1
            if pending[0] == 0 and args.ready:
                with open(args.ready, "w") as f:
                    f.write("%d\n" % sum(1 for d in devices if stats[d]["error"] is None))

    threads = [threading.Thread(target=run_device, args=(args, d, acklog, stats, stop, connected_cb),
                                daemon=True) for d in devices]
    for t in threads:
        t.start()
    deadline = time.monotonic() + args.max_seconds
    for t in threads:
        while t.is_alive() and time.monotonic() < deadline:
            t.join(0.1)
    if any(t.is_alive() for t in threads):
        stop.set()
        for t in threads:
            t.join(5)
    total = {"published": sum(s["published"] for s in stats.values()),
             "acked": sum(s["acked"] for s in stats.values()),
             "connected": sum(1 for s in stats.values() if s["connected"]),
             "devices": stats}
    text = json.dumps(total, sort_keys=True)
    if args.stats:
        with open(args.stats, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


# ---------------------------------------------------------------------------
# check


class Api:
    def __init__(self, port, ca, token):
        self.port, self.token = port, token
        self.ctx = ssl.create_default_context(cafile=ca)
        self.conn = None

    def get(self, path):
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                            timeout=60)
                self.conn.request("GET", path, headers={"Authorization": "Bearer " + self.token})
                r = self.conn.getresponse()
                body = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, body
            except (http.client.HTTPException, OSError):
                if self.conn:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2)


def search_all(api, patient):
    """Every Observation of PATIENT: a FHIR search with _count=1000, following
    'next' links when the server pages. Returns (resources, None) or
    (None, why)."""
    path = "/fhir/Observation?patient=%s&_count=1000" % patient
    out = []
    for _ in range(10000):
        status, body = api.get(path)
        if status != 200:
            return None, "FHIR search %s answered %d: %s" % (path, status, body[:300])
        try:
            bundle = json.loads(body)
        except ValueError as e:
            return None, "FHIR search %s answered invalid JSON: %s" % (path, e)
        page = [e["resource"] for e in bundle.get("entry", [])]
        out.extend(page)
        nxt = [l.get("url", "") for l in bundle.get("link", []) if l.get("relation") == "next"]
        if not nxt:
            total = bundle.get("total")
            # One page that is the whole result: total is its size (a server
            # that caps the page without a 'next' link shows it here).
            if total is not None and path.endswith("_count=1000") and total != len(page):
                return None, ("Bundle.total is %s but %d entries came and no 'next' link: the harness "
                              "cannot see them all" % (total, len(page)))
            return out, None
        u = urllib.parse.urlsplit(nxt[0])
        path = u.path + ("?" + u.query if u.query else "")
    return None, "more than 10000 pages"


def fingerprint(db, patient):
    h = hashlib.sha256()
    n = 0
    for rid, dev, code, sealed in db.execute(
            "SELECT id, device_id, code, sealed FROM readings WHERE patient_id = ? ORDER BY id", (patient,)):
        for part in (rid.encode(), dev.encode(), code.encode(), bytes(sealed)):
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
        n += 1
    h.update(b"keys")
    for kid, wrapped in db.execute(
            "SELECT key_id, wrapped FROM patient_keys WHERE patient_id = ? ORDER BY key_id", (patient,)):
        h.update(str(kid).encode() + b":" + bytes(wrapped))
    return h.hexdigest(), n


def cmd_check(args):
    t0 = args.t0_ms
    problems = []

    def problem(msg):
        problems.append(msg)
        print("FAIL " + msg)

    # The map: patient -> (cycle, device, first seq).
    pmap = {}
    for line in open(args.map):
        f = line.split()
        if len(f) != 4:
            continue
        pmap[f[2]] = (int(f[0]), f[1], int(f[3]))
    by_dev_seq = {}  # (device, first_seq) -> patient
    for p, (c, d, first) in pmap.items():
        by_dev_seq[(d, first)] = p
    stride = args.stride

    # The acknowledgments, grouped by patient.
    acked = {p: {} for p in pmap}
    n_acked = 0
    if os.path.exists(args.acks):
        for ln, line in enumerate(open(args.acks), 1):
            f = line.rstrip("\n").split("\t")
            if len(f) != 4:
                # A torn last line cannot happen (one write per line), but say so.
                print("# acks line %d malformed: %r" % (ln, line))
                return 2
            dev, t, v, k = f[0], f[1], float(f[2]), int(f[3])
            first = k - (k % stride)
            p = by_dev_seq.get((dev, first))
            if p is None:
                print("# harness error: acknowledged reading %s %s (seq %d) belongs to no patient of the map"
                      % (dev, t, k))
                return 2
            tms = parse_time(t)
            if tms != t0 + k:
                print("# harness error: acks line %d: time %s does not encode seq %d" % (ln, t, k))
                return 2
            if tms in acked[p]:
                problem("%s: reading %s acknowledged twice by the server (PUBACK for two PUBLISHes?)"
                        % (dev, t))
            acked[p][tms] = v
            n_acked += 1

    try:
        db = sqlite3.connect("file:%s?mode=ro" % args.db, uri=True, timeout=30)
        db.execute("PRAGMA busy_timeout = 30000")
        rows = {}
        for p, d, n in db.execute("SELECT patient_id, device_id, count(*) FROM readings GROUP BY 1, 2"):
            rows[(p, d)] = n
        # Readings and their readings.store audit record commit together:
        # per patient, the counts in those records add up to its rows.
        audited = {}
        for target, detail in db.execute(
                "SELECT target, detail FROM audit WHERE action = 'readings.store' AND outcome = 'success'"):
            m = STORED_RE.match(detail)
            if m and target.startswith("patient:"):
                audited[target[8:]] = audited.get(target[8:], 0) + int(m.group(1))
    except sqlite3.Error as e:
        problem("cannot read the database %s: %s" % (args.db, e))
        print(json.dumps({"ok": False, "problems": len(problems)}))
        return 1
    for p in sorted(pmap):
        n = sum(v for (pp, _), v in rows.items() if pp == p)
        if audited.get(p, 0) != n:
            problem("%s: %d readings stored, but its readings.store audit records count %d"
                    % (p, n, audited.get(p, 0)))
    devices = {d for (_, d, _) in pmap.values()}
    for (p, d), n in sorted(rows.items()):
        if d in devices and p not in pmap:
            problem("%d readings of %s are stored for patient %s, which it was never assigned to" % (n, d, p))
        if p in pmap and pmap[p][1] != d:
            problem("%d readings of device %s are stored for patient %s (assigned: %s)" % (n, d, p, pmap[p][1]))

    state = {}
    if args.state and os.path.exists(args.state):
        with open(args.state) as f:
            state = json.load(f)
    lost_all = set(state.pop("_lost", []))  # "device time" of every reading found lost so far
    dup_all = set(state.pop("_dup", []))
    token = open(args.token_file).read().strip()
    api = Api(args.api_port, args.ca, token)
    fetched = reused = stored_unacked = checked = 0
    for p in sorted(pmap, key=lambda x: (pmap[x][0], x)):
        cycle, dev, first = pmap[p]
        fp, nrows = fingerprint(db, p)
        prev = state.get(p)
        if prev and not args.full and prev.get("fp") == fp and prev.get("ok"):
            # Verified byte-identical rows before; the acks of a finished
            # cycle do not change, but make sure.
            if prev.get("acked") != len(acked[p]):
                problem("%s: %d acknowledged readings now, %d at its verification" %
                        (p, len(acked[p]), prev.get("acked")))
            reused += 1
            checked += len(acked[p])
            stored_unacked += prev.get("extra", 0)
            continue
        if prev and prev.get("ok") and prev.get("fp") != fp:
            print("# %s: its rows changed since they were verified (%s rows then, %d now): verifying again"
                  % (p, prev.get("rows"), nrows))
        fetched += 1
        bad_before = len(problems)
        entries, why = search_all(api, p)
        if why:
            problem("%s: %s" % (p, why))
            state[p] = {"fp": fp, "ok": False}
            continue
        if nrows != len(entries):
            problem("%s: the database has %d readings for it, the API returned %d" % (p, nrows, len(entries)))
        seen = {}
        for r in entries:
            try:
                d = r["device"]["reference"].split("/", 1)[1]
                code = r["code"]["coding"][0]["code"]
                tms = parse_time(r["effectiveDateTime"])
                v = float(r["valueQuantity"]["value"])
                unit = r["valueQuantity"]["unit"]
            except (KeyError, IndexError, ValueError, TypeError) as e:
                problem("%s: unreadable Observation %s: %s" % (p, r.get("id"), e))
                continue
            if d != dev or code != CODE or unit != UNIT:
                problem("%s: Observation %s is %s %s %s from %s, expected %s %s from %s" %
                        (p, r.get("id"), code, v, unit, d, CODE, UNIT, dev))
                continue
            k = tms - t0
            if not (first <= k < first + stride):
                problem("%s: Observation %s has time %s, outside the readings %s sent in cycle %d" %
                        (p, r.get("id"), r["effectiveDateTime"], dev, cycle))
                continue
            if milli(v) != reading_milli(k):
                problem("%s: Observation %s (%s %s) has value %r; %s sent %r" %
                        (p, r.get("id"), dev, r["effectiveDateTime"], v, dev, reading_value(k)))
            elif tms in acked[p] and milli(acked[p][tms]) != milli(v):
                problem("%s: Observation %s (%s %s) has value %r; the acknowledged reading had %r" %
                        (p, r.get("id"), dev, r["effectiveDateTime"], v, acked[p][tms]))
            seen.setdefault(tms, []).append(r.get("id"))
        dups = {t: ids for t, ids in seen.items() if len(ids) > 1}
        for t, ids in sorted(dups.items()):
            dup_all.add("%s %s" % (dev, fmt_time(t)))
            problem("DUPLICATED %s: reading %s %s stored %d times (%s)%s" %
                    (p, dev, fmt_time(t), len(ids), " ".join(ids), "" if t in acked[p] else ", not acknowledged"))
        lost = [t for t in acked[p] if t not in seen]
        lost_all.update("%s %s" % (dev, fmt_time(t)) for t in lost)
        for t in sorted(lost)[:20]:
            problem("LOST %s: acknowledged reading %s %s (value %r) is not stored" %
                    (p, dev, fmt_time(t), acked[p][t]))
        if len(lost) > 20:
            problem("LOST %s: ... and %d more acknowledged readings" % (p, len(lost) - 20))
        extra = sum(1 for t in seen if t not in acked[p])
        stored_unacked += extra
        checked += len(acked[p])
        state[p] = {"fp": fp, "rows": nrows, "acked": len(acked[p]), "extra": extra,
                    "ok": len(problems) == bad_before}
        if args.verbose:
            print("# %s (cycle %d, %s): %d stored, %d acknowledged, %d stored without PUBACK" %
                  (p, cycle, dev, len(entries), len(acked[p]), extra))
    state["_lost"] = sorted(lost_all)
    state["_dup"] = sorted(dup_all)
    if args.state:
        tmp = args.state + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, args.state)
    summary = {"ok": not problems, "acked": n_acked, "checked": checked, "patients": len(pmap),
               "fetched": fetched, "reused": reused, "stored_unacked": stored_unacked,
               "lost": len(lost_all), "duplicated": len(dup_all), "problems": len(problems)}
    print(json.dumps(summary, sort_keys=True))
    return 0 if not problems else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--port", type=int, required=True, help="vigil's MQTT/TLS port")
    lo.add_argument("--ca", required=True)
    lo.add_argument("--certs", required=True, help="directory with DEVICE.pem and DEVICE.key")
    lo.add_argument("--devices", required=True, help="comma-separated device ids")
    lo.add_argument("--acks", required=True)
    lo.add_argument("--ready")
    lo.add_argument("--stats")
    lo.add_argument("--t0-ms", type=int, required=True)
    lo.add_argument("--first-seq", type=int, default=0)
    lo.add_argument("--max-per-device", type=int, default=900)
    lo.add_argument("--window", type=int, default=20)
    lo.add_argument("--rate", type=float, default=0, help="readings/s per device (0: as fast as acked)")
    lo.add_argument("--max-seconds", type=float, default=120)
    ch = sub.add_parser("check")
    ch.add_argument("--api-port", type=int, required=True)
    ch.add_argument("--ca", required=True)
    ch.add_argument("--token-file", required=True)
    ch.add_argument("--db", required=True)
    ch.add_argument("--acks", required=True)
    ch.add_argument("--map", required=True)
    ch.add_argument("--state")
    ch.add_argument("--t0-ms", type=int, required=True)
    ch.add_argument("--stride", type=int, default=1000)
    ch.add_argument("--full", action="store_true")
    ch.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.cmd == "load":
        if args.max_per_device < 1:
            ap.error("--max-per-device must be positive")
        return cmd_load(args)
    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
