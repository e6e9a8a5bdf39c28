#!/usr/bin/python3
"""Validates FHIR R4 JSON resources against the official schema (subset).

    validate_fhir.py [--schema FILE] [--quiet] [FILE ...]

Reads each FILE (or standard input when there is none, or for "-") and
validates it with python3-jsonschema's Draft6Validator against
tests/data/fhir/fhir-r4-subset.schema.json: the HL7 FHIR R4 (4.0.1) JSON
schema cut down to AuditEvent, Bundle and Observation (see
tests/data/fhir/SOURCE.md). A resource of any other type, also inside a
Bundle, is reported as invalid.

Prints one line per error ("FILE: /json/pointer: message"; for a failed
"oneOf" over the resource types, the errors of the branch whose
resourceType matches) and "FILE: ok (Type)" for each valid file unless
--quiet. Exits 0 when every file is valid, 1 when any is not (or is not
JSON), 2 on a usage error.
"""

import argparse
import json
import os
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "..", "data", "fhir", "fhir-r4-subset.schema.json")


def pointer(path):
    return "/" + "/".join(str(p) for p in path)


def leaf_errors(error):
    """The errors worth printing for one top-level error.

    A resource fails the root oneOf as a whole; what the reader wants is why
    it failed against the branch of its own resourceType. jsonschema keeps
    each branch's errors in error.context; those whose schema path goes
    through the branch that pinned resourceType (the one without a 'const'
    error) are the relevant ones. Recurses into nested oneOfs (Bundle
    entries, contained resources)."""
    if error.validator != "oneOf" or not error.context:
        return [error]
    by_branch = {}
    for sub in error.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    matching = [errs for errs in by_branch.values()
                if not any(e.validator == "const" and list(e.relative_path) == ["resourceType"]
                           for e in errs)]
    if len(matching) != 1:
        return [error]  # no or several branches for this resourceType
    out = []
    for sub in matching[0]:
        out.extend(leaf_errors(sub))
    return out


def validate(validator, name, text):
    """Returns the list of error lines for one document."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        return ["%s: not JSON: %s" % (name, e)]
    lines = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        for leaf in leaf_errors(error):
            lines.append("%s: %s: %s" % (name, pointer(leaf.absolute_path), leaf.message[:300]))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schema", default=DEFAULT_SCHEMA)
    ap.add_argument("--quiet", action="store_true", help="print errors only")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()

    with open(a.schema, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft6Validator.check_schema(schema)
    validator = jsonschema.Draft6Validator(schema)

    bad = 0
    for name in a.files or ["-"]:
        if name == "-":
            name, text = "<stdin>", sys.stdin.read()
        else:
            try:
                with open(name, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                print("%s: cannot read: %s" % (name, e))
                bad += 1
                continue
        errors = validate(validator, name, text)
        for line in errors:
            print(line)
        if errors:
            bad += 1
        elif not a.quiet:
            print("%s: ok (%s)" % (name, json.loads(text).get("resourceType")))
    if len(a.files) > 1 or bad:
        print("%d valid, %d invalid" % (len(a.files or ["-"]) - bad, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
