#!/usr/bin/python3
"""The access matrix: every role x every action x (own patient, other
patient, none), through the real HTTPS API and real MQTT clients, against
the expected outcome. Prints one "ok - ..." / "not ok - ..." line per cell
and per audit check; exits 1 on any unexpected allow or deny.

    access_matrix.py DATADIR API_PORT MQTT_PORT WORKDIR
"""
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt

DIR, API, MQTT, WORK = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
HERE = os.path.dirname(os.path.abspath(__file__))
CA = os.path.join(DIR, "pki", "ca.pem")
CTX = ssl.create_default_context(cafile=CA)
ADMIN = open(os.path.join(DIR, "admin.token")).read().strip()
failures = 0


def report(ok, what, why=""):
    global failures
    if ok:
        print("ok - " + what)
    else:
        failures += 1
        print("not ok - %s: %s" % (what, why))


def call(method, path, body=None, token=ADMIN):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("https://127.0.0.1:%d%s" % (API, path), data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, None


def must(status, body, want, what):
    if status != want:
        print("# setup failed: %s: %s %s" % (what, status, body))
        sys.exit(1)
    return body


def totp(uri):
    return subprocess.run(["/usr/bin/python3", os.path.join(HERE, "totp.py"), uri],
                          capture_output=True, text=True, check=True).stdout.strip()


# ---- the cast
must(*call("POST", "/api/v1/patients", {"id": "p-own"}), 201, "patient p-own")
must(*call("POST", "/api/v1/patients", {"id": "p-other"}), 201, "patient p-other")
must(*call("POST", "/api/v1/devices", {"id": "mx-dev"}), 201, "device mx-dev")
must(*call("PUT", "/api/v1/devices/mx-dev/patient", {"patient": "p-own"}), 200, "assign mx-dev")

people = {"adm-clin": ["admin", "clinician"], "clin": ["clinician"], "nurse": ["nurse"],
          "biomed": ["biomed"], "auditor": ["auditor"]}
tokens = {"admin": ADMIN}
for who, roles in people.items():
    pw = "matrix-" + who + "-" + os.urandom(9).hex()
    b = must(*call("POST", "/api/v1/users", {"id": who, "roles": roles, "password": pw}), 201, "user " + who)
    s, b = call("POST", "/api/v1/login", {"user": who, "password": pw, "totp": totp(b["totp_uri"])}, None)
    tokens[who] = must(s, b, 200, "login " + who)["token"]
must(*call("POST", "/api/v1/users", {"id": "integ", "kind": "service", "roles": ["integration"]}), 201, "integ")
tokens["integ"] = must(*call("POST", "/api/v1/tokens", {"principal": "integ", "scopes": ["obs.read", "obs.subscribe"],
                                                          "patients": ["p-own"]}), 201, "integ token")["token"]
for who in ("adm-clin", "clin", "nurse"):
    must(*call("POST", "/api/v1/careteam", {"user": who, "patient": "p-own"}), 201, "care team " + who)

# Certificates for live data (client id = principal id).
certs = {}
for who in tokens:
    b = must(*call("POST", "/api/v1/users/%s/certificate" % who), 201, "certificate " + who)
    base = os.path.join(WORK, who)
    open(base + ".pem", "w").write(b["certificate"])
    with open(os.open(base + ".key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(b["private_key"])
    certs[who] = base


def subscribe(who, patient):
    """SUBACK code for vigil/v1/p/PATIENT/obs, or None without one."""
    got = {}
    done = threading.Event()
    c = mqtt.Client(client_id=who, protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=CA, certfile=certs[who] + ".pem", keyfile=certs[who] + ".key")

    def on_connect(cl, ud, flags, rc):
        got["connack"] = rc
        if rc == 0:
            cl.subscribe("vigil/v1/p/%s/obs" % patient, qos=0)
        else:
            done.set()

    def on_subscribe(cl, ud, mid, granted):
        got["granted"] = granted[0]
        done.set()

    c.on_connect, c.on_subscribe = on_connect, on_subscribe
    c.connect("127.0.0.1", MQTT, keepalive=30)
    c.loop_start()
    done.wait(15)
    c.disconnect()
    c.loop_stop()
    return got.get("granted")


# ---- the matrix: A = allowed, D = denied
ROLES = ["admin", "adm-clin", "clin", "nurse", "biomed", "auditor", "integ"]
#                 read own/other  sub own/other  enroll  assign own/other  users  audit  bg own/other
EXPECT = {
    "admin":    "DD DD A AA A D DD",
    "adm-clin": "AD AD A AA A D DA",
    "clin":     "AD AD D DD D D DA",
    "nurse":    "AD AD D DD D D DD",
    "biomed":   "DD DD A AA D D DD",
    "auditor":  "DD DD D DD D A DD",
    "integ":    "AD AD D DD D D DD",
}
counter = [0]


def act(who, action, target):
    tok = tokens[who]
    if action == "read":
        s, _ = call("GET", "/fhir/Observation?patient=" + target, token=tok)
        return s == 200, s
    if action == "subscribe":
        g = subscribe(who, target)
        return g == 0, g
    if action == "enroll":
        counter[0] += 1
        s, _ = call("POST", "/api/v1/devices", {"id": "mx-%s-%d" % (who, counter[0])}, tok)
        return s == 201, s
    if action == "assign":
        s, _ = call("PUT", "/api/v1/devices/mx-dev/patient", {"patient": target}, tok)
        return s == 200, s
    if action == "users":
        counter[0] += 1
        s, _ = call("POST", "/api/v1/users", {"id": "svc-%d" % counter[0], "kind": "service",
                                              "roles": ["integration"]}, tok)
        return s == 201, s
    if action == "audit":
        s, _ = call("GET", "/api/v1/audit?limit=1", token=tok)
        return s == 200, s
    if action == "breakglass":
        s, _ = call("POST", "/api/v1/breakglass", {"patient": target, "reason": "matrix test: cardiac arrest"}, tok)
        return s == 201, s
    raise ValueError(action)


CELLS = [("read", "p-own"), ("read", "p-other"), ("subscribe", "p-own"), ("subscribe", "p-other"),
         ("enroll", None), ("assign", "p-own"), ("assign", "p-other"), ("users", None),
         ("audit", None), ("breakglass", "p-own"), ("breakglass", "p-other")]
unexpected_allow = unexpected_deny = 0
expect_denied_patient = expect_allowed_reads = 0
for who in ROLES:
    want = EXPECT[who].replace(" ", "")
    for (action, target), w in zip(CELLS, want):
        allowed, detail = act(who, action, target)
        rel = {"p-own": "own patient", "p-other": "other patient", None: "none"}[target]
        report(allowed == (w == "A"), "%s %s (%s): %s" % (who, action, rel, "allowed" if w == "A" else "denied"),
               "got %s (%s)" % ("allowed" if allowed else "denied", detail))
        if allowed and w != "A":
            unexpected_allow += 1
        if not allowed and w == "A":
            unexpected_deny += 1
        if action in ("read", "subscribe") and w == "D":
            expect_denied_patient += 1
        if action == "read" and w == "A":
            expect_allowed_reads += 1
print("# matrix: %d unexpected allows, %d unexpected denials" % (unexpected_allow, unexpected_deny))

# Break-glass opened by clin and adm-clin on p-other: their reads now pass,
# under the grant, and the audit records carry the reason.
for who in ("clin", "adm-clin"):
    s, _ = call("GET", "/fhir/Observation?patient=p-other", token=tokens[who])
    report(s == 200, "%s reads p-other under break-glass" % who, s)
db = sqlite3.connect(os.path.join(DIR, "vigil.db"))
n = db.execute("SELECT count(*) FROM audit WHERE action = 'obs.breakglass' AND target = 'patient:p-other'"
               " AND instr(detail, 'cardiac arrest') > 0").fetchone()[0]
report(n == 2, "break-glass reads are audited with the reason", "found %d" % n)
n = db.execute("SELECT count(*) FROM audit WHERE action = 'alert.raised' AND instr(detail, 'break-glass') > 0").fetchone()[0]
report(n == 2, "each break-glass raised an alert record for auditors", "found %d" % n)
# Every decision on patient data is audited, allowed or denied.
n = db.execute("SELECT count(*) FROM audit WHERE action IN ('obs.read', 'obs.subscribe') AND outcome = 'denied'").fetchone()[0]
report(n == expect_denied_patient, "every denied read or subscription is audited (%d)" % expect_denied_patient, "found %d" % n)
n = db.execute("SELECT count(*) FROM audit WHERE action = 'obs.read' AND outcome = 'success'").fetchone()[0]
report(n == expect_allowed_reads, "every allowed read is audited (%d)" % expect_allowed_reads, "found %d" % n)
n = db.execute("SELECT count(*) FROM audit WHERE action = 'obs.subscribe' AND outcome = 'success'").fetchone()[0]
report(n == expect_allowed_reads, "every allowed subscription is audited", "found %d" % n)
sys.exit(1 if failures else 0)
