#!/usr/bin/python3
"""Checks a FHIR R4 searchset Bundle of Observations (read from a file).

  check_fhir.py FILE --patient P [--total N]
                [--obs CODE,VALUE,UNIT[,EFFECTIVE] ...]

Prints one line per problem and exits 1 if there is any, else prints a
summary and exits 0. --obs requires an entry with that LOINC code, numeric
value (to 1e-9), UCUM unit and, if given, effectiveDateTime instant.
"""

import argparse
import datetime
import json
import math
import sys


def instant(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--patient", required=True)
    ap.add_argument("--total", type=int)
    ap.add_argument("--obs", action="append", default=[])
    a = ap.parse_args()
    problems = []
    try:
        with open(a.file, encoding="utf-8") as f:
            b = json.load(f)
    except Exception as e:
        print("not JSON: %s" % e)
        return 1
    if b.get("resourceType") != "Bundle":
        problems.append("resourceType is %r, not Bundle" % b.get("resourceType"))
    if b.get("type") != "searchset":
        problems.append("Bundle.type is %r, not searchset" % b.get("type"))
    entries = b.get("entry")
    if not isinstance(entries, list):
        problems.append("Bundle.entry is not a list")
        entries = []
    if a.total is not None and b.get("total") != a.total:
        problems.append("Bundle.total is %r, expected %d" % (b.get("total"), a.total))
    if a.total is not None and len(entries) != a.total:
        problems.append("%d entries, expected %d" % (len(entries), a.total))
    for i, e in enumerate(entries):
        r = e.get("resource", {})
        if r.get("resourceType") != "Observation":
            problems.append("entry %d: resourceType %r" % (i, r.get("resourceType")))
        if r.get("subject", {}).get("reference") != "Patient/" + a.patient:
            problems.append("entry %d: subject %r, expected Patient/%s" % (i, r.get("subject"), a.patient))
        try:
            instant(r["effectiveDateTime"])
        except Exception:
            problems.append("entry %d: effectiveDateTime %r is not a date-time" % (i, r.get("effectiveDateTime")))
    for want in a.obs:
        parts = want.split(",")
        code, value, unit = parts[0], float(parts[1]), parts[2]
        eff = instant(parts[3]) if len(parts) > 3 else None
        found = False
        for e in entries:
            r = e.get("resource", {})
            coding = (r.get("code", {}).get("coding") or [{}])[0]
            vq = r.get("valueQuantity", {})
            v = vq.get("value")
            if (
                coding.get("system") == "http://loinc.org"
                and coding.get("code") == code
                and isinstance(v, (int, float))
                and math.isclose(v, value, rel_tol=0, abs_tol=1e-9)
                and vq.get("unit") == unit
                and vq.get("system") == "http://unitsofmeasure.org"
                and vq.get("code") == unit
                and (eff is None or instant(r.get("effectiveDateTime", "")) == eff)
            ):
                found = True
        if not found:
            problems.append(
                "no Observation with LOINC %s value %s UCUM %s%s; have: %s"
                % (
                    code,
                    parts[1],
                    unit,
                    " at " + parts[3] if eff else "",
                    json.dumps(
                        [
                            [
                                (e["resource"].get("code", {}).get("coding") or [{}])[0].get("code"),
                                e["resource"].get("valueQuantity"),
                                e["resource"].get("effectiveDateTime"),
                            ]
                            for e in entries
                            if "resource" in e
                        ]
                    )[:600],
                )
            )
    for p in problems:
        print(p)
    if problems:
        return 1
    print("Bundle searchset with %d entries for Patient/%s" % (len(entries), a.patient))
    return 0


if __name__ == "__main__":
    sys.exit(main())
