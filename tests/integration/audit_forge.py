#!/usr/bin/python3
"""Forges an audit trail the way a careful attacker with write access to the
database file would: inserts or edits a record and then RECOMPUTES every
following hash so the chain links again. Only the signed checkpoints can
catch this. Used by test_audit_tamper.sh.

    audit_forge.py DB insert-after SEQ
    audit_forge.py DB edit SEQ
    audit_forge.py DB rehash-tail FROM_SEQ   (edit FROM_SEQ, rehash the rest)
"""
import hashlib
import sqlite3
import struct
import sys


def field(b):
    return struct.pack(">I", len(b)) + b


def record_hash(prev, seq, ts, fields):
    h = hashlib.sha256()
    h.update(prev)
    h.update(field(str(seq).encode()))
    h.update(field(str(ts).encode()))
    for f in fields:
        h.update(field(f.encode()))
    return h.digest()


def rehash(db):
    rows = db.execute("SELECT seq, ts_ms, actor, action, target, outcome, detail, source"
                      " FROM audit ORDER BY seq").fetchall()
    prev = b"\0" * 32
    for seq, ts, *fields in rows:
        h = record_hash(prev, seq, ts, fields)
        db.execute("UPDATE audit SET prev = ?, hash = ? WHERE seq = ?", (prev, h, seq))
        prev = h


def main():
    path, op, seq = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = sqlite3.connect(path)
    db.executescript("DROP TRIGGER IF EXISTS audit_no_update;"
                     "DROP TRIGGER IF EXISTS audit_no_delete;")
    if op == "insert-after":
        # Shift the later records up by one (descending, to keep seq unique).
        for (s,) in db.execute("SELECT seq FROM audit WHERE seq > ? ORDER BY seq DESC",
                               (seq,)).fetchall():
            db.execute("UPDATE audit SET seq = seq + 1 WHERE seq = ?", (s,))
        db.execute("INSERT INTO audit(seq, ts_ms, actor, action, target, outcome, detail,"
                   " source, prev, hash) SELECT ?, ts_ms, 'user:admin', 'obs.read',"
                   " 'patient:p1', 'success', 'nothing to see', '', prev, hash"
                   " FROM audit WHERE seq = ?", (seq + 1, seq))
    elif op in ("edit", "rehash-tail"):
        db.execute("UPDATE audit SET detail = 'nothing happened' WHERE seq = ?", (seq,))
    rehash(db)
    db.commit()


if __name__ == "__main__":
    main()
