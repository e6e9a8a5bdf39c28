#!/usr/bin/python3
"""Prints the current RFC 6238 code (SHA-1, 6 digits, 30 s) for an otpauth://
URI or a base32 secret given as the only argument — what an authenticator
app would show. Used by the integration tests to log people in.

    totp.py 'otpauth://totp/vigil:alice?secret=...'   [--at UNIX_TIME] [--step-offset N]
"""
import base64
import hmac
import struct
import sys
import time
import urllib.parse


def secret_of(arg):
    if arg.startswith("otpauth://"):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(arg).query)
        arg = q["secret"][0]
    arg = arg.upper()
    return base64.b32decode(arg + "=" * (-len(arg) % 8))


def code(secret, t):
    msg = struct.pack(">Q", int(t) // 30)
    h = hmac.new(secret, msg, "sha1").digest()
    o = h[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def main():
    args = sys.argv[1:]
    at = time.time()
    offset = 0
    if "--at" in args:
        at = float(args[args.index("--at") + 1])
    if "--step-offset" in args:
        offset = int(args[args.index("--step-offset") + 1])
    print(code(secret_of(args[0]), at + 30 * offset))


if __name__ == "__main__":
    main()
