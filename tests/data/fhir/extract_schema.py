#!/usr/bin/python3
"""Extracts a self-contained subset of the official FHIR R4 JSON schema.

    extract_schema.py SOURCE [OUTPUT] [--resources AuditEvent,Bundle,Observation]

A one-off tool, kept so the subset can be remade and checked. SOURCE is HL7's
fhir.schema.json for R4 (4.0.1): a draft-06 JSON Schema whose root is a
oneOf over all 146 resource types, with a "discriminator" (an OpenAPI
keyword, not JSON Schema) on resourceType. vigil only emits and tests
a few resource types, and its tests must not depend on the 3.3 MB file.

What the subset is:

- the definitions of the named resources and everything they reach through
  "$ref", followed transitively, copied unchanged;
- "ResourceList" (the type of Bundle.entry.resource and of every resource's
  "contained") replaced by a oneOf over the named resources only. Each
  resource definition pins "resourceType" with "const", so exactly one
  branch can match and no discriminator is needed;
- the root: "$schema" (draft-06, as in the source), a "description" naming
  the source and its SHA-256, and the same oneOf. The source's "id" and
  "discriminator" are not copied: the subset is not HL7's schema, and
  draft-06 validators ignore "discriminator" anyway.

Consequence: a Bundle entry or a contained resource of any other type (a
Patient, say) fails against the subset although the full schema accepts it.

Every keyword the subset uses ($ref, const, enum, items, oneOf, pattern,
properties, additionalProperties, required, type, description) has the
same meaning in draft-06 as in the source, so validating against the subset
gives the same answer as against the full schema for these resource types.

The tool checks that every "$ref" in the output resolves inside it and that
the output is a valid draft-06 schema (when python3-jsonschema is
installed), prints the SHA-256 of SOURCE and of OUTPUT, and writes OUTPUT
(default: fhir-r4-subset.schema.json next to this script) with two-space
indentation, keys in the source's order, and a trailing newline.
"""

import argparse
import collections
import hashlib
import json
import os
import sys

DEFAULT_RESOURCES = ["AuditEvent", "Bundle", "Observation"]
EXPECTED_SHA256 = "2230406893b4cf002a4ee1e5e2bbeca22ac5d2d4931b3e9ef7b9594bbc376a01"
REF_PREFIX = "#/definitions/"


def refs_in(node):
    """Yields every "$ref" target name found anywhere inside node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                if not value.startswith(REF_PREFIX):
                    raise SystemExit("unsupported $ref %r" % value)
                yield value[len(REF_PREFIX):]
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="HL7's fhir.schema.json (R4 4.0.1)")
    ap.add_argument("output", nargs="?", default=os.path.join(here, "fhir-r4-subset.schema.json"))
    ap.add_argument("--resources", default=",".join(DEFAULT_RESOURCES),
                    help="comma-separated resource types (default: %(default)s)")
    a = ap.parse_args()

    with open(a.source, "rb") as f:
        raw = f.read()
    sha = hashlib.sha256(raw).hexdigest()
    print("source %s: %d bytes, SHA-256 %s" % (a.source, len(raw), sha))
    if sha != EXPECTED_SHA256:
        print("warning: not the SHA-256 recorded in SOURCE.md (%s)" % EXPECTED_SHA256,
              file=sys.stderr)
    src = json.loads(raw.decode("utf-8"), object_pairs_hook=collections.OrderedDict)
    defs = src["definitions"]

    resources = [r for r in a.resources.split(",") if r]
    all_resources = set(src["discriminator"]["mapping"])
    for r in resources:
        if r not in all_resources:
            raise SystemExit("%s is not a resource type of the source schema" % r)
    one_of = [{"$ref": REF_PREFIX + r} for r in resources]

    # Transitive closure over $ref, without expanding ResourceList.
    keep = set()
    todo = list(resources)
    while todo:
        name = todo.pop()
        if name in keep or name == "ResourceList":
            continue
        if name not in defs:
            raise SystemExit("dangling $ref to %s" % name)
        keep.add(name)
        todo.extend(refs_in(defs[name]))

    out_defs = collections.OrderedDict()
    for name, definition in defs.items():  # the source's order
        if name == "ResourceList":
            out_defs[name] = collections.OrderedDict(
                [("oneOf", one_of),
                 ("description", "vigil subset: only " + ", ".join(resources))])
        elif name in keep:
            out_defs[name] = definition

    out = collections.OrderedDict()
    out["$schema"] = src["$schema"]
    out["description"] = (
        "Subset of the FHIR R4 (4.0.1) JSON schema (HL7, CC0) for %s, made by "
        "tests/data/fhir/extract_schema.py from fhir.schema.json, SHA-256 %s. "
        "Definitions are copied unchanged; ResourceList and the root oneOf list only "
        "these resource types." % (", ".join(resources), sha))
    out["oneOf"] = one_of
    out["definitions"] = out_defs

    missing = sorted(set(refs_in(out)) - set(out_defs))
    if missing:
        raise SystemExit("unresolved $ref in the subset: %s" % ", ".join(missing))
    try:
        import jsonschema
        jsonschema.Draft6Validator.check_schema(out)
    except ImportError:
        print("python3-jsonschema not installed: schema not self-checked", file=sys.stderr)

    text = json.dumps(out, indent=2, ensure_ascii=False) + "\n"
    with open(a.output, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print("wrote %s: %d definitions (of %d), %d bytes, SHA-256 %s"
          % (a.output, len(out_defs), len(defs), len(text.encode("utf-8")),
             hashlib.sha256(text.encode("utf-8")).hexdigest()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
