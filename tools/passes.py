"""Signed passes for technicians and issuers: keys, trust list, passes, checks, revocations.

    python -m tools.passes secret   --out district.secret
    python -m tools.passes keygen   --kid gz-health-2026 --key issuer.key --trust-list trust.json \\
                                    [--valid-from 2026-01-01] [--valid-until 2027-01-01] [--kinds health]
    python -m tools.passes issue    --key issuer.key --kid gz-health-2026 --kind health --color green \\
                                    [--valid-for 24h] [--issued-at T] < holder.txt      (QR text on stdout)
    python -m tools.passes verify   --trust-list trust.json [--revocations rev.json] [--at T] < qr.txt
    python -m tools.passes revoke   --revocations rev.json --holder-stdin [--issued-before T] < holder.txt
    python -m tools.passes revoke   --revocations rev.json --pass-stdin < qr.txt

Holder ids and QR texts are read from standard input, never from the command line, so they do
not end up in shell history or in `ps`. The district secret comes from --secret-file, else
$CHECKPOINT_DISTRICT_SECRET_FILE, else $CHECKPOINT_DISTRICT_SECRET. Files are written
atomically (temporary file, fsync, rename); private keys and the secret with mode 0600.
File formats: see gateway/verifier.py.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.verifier import ConfigError, HolderHasher, SignedPassVerifier, load_secret
from kiosk import protocol


class UsageError(Exception):
    pass


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=path.parent or ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def parse_time(text: str) -> int:
    """UTC Unix seconds, or an ISO date/time (UTC unless it carries an offset)."""
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (Unix seconds or ISO 8601)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def parse_duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            value = int(text[:-1]) * units[text[-1]]
        else:
            value = int(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 90m, 24h, 7d)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return value


def read_stdin_line(what: str) -> str:
    text = sys.stdin.readline().strip()
    if not text:
        raise UsageError(f"expected {what} on standard input")
    return text


def load_json(path: Path, empty: dict[str, Any]) -> dict[str, Any]:
    if not path.exists():
        return empty
    try:
        obj = json.loads(path.read_text())
    except ValueError as err:
        raise UsageError(f"{path}: not valid JSON ({err}); fix it by hand, nothing was changed") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{path}: must be a JSON object")
    return obj


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cmd_secret(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; a new district secret changes every holder_ref (use --force to replace)")
    write_atomic(out, b64(secrets.token_bytes(32)) + "\n", 0o600)
    print(f"district secret written to {out} (mode 600); copy it to every gateway of the district")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    key_path = Path(args.key)
    if key_path.exists() and not args.force:
        raise UsageError(f"{key_path} exists; refusing to overwrite an issuer key (--force)")
    protocol.check_id(args.kid, "kid")
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    write_atomic(key_path, json.dumps({"kid": args.kid, "private_key": b64(seed)}) + "\n", 0o600)
    entry: dict[str, Any] = {"public_key": b64(public)}
    if args.valid_from is not None:
        entry["valid_from"] = args.valid_from
    if args.valid_until is not None:
        entry["valid_until"] = args.valid_until
    if args.kinds:
        entry["kinds"] = args.kinds
    print(f"issuer key {args.kid} written to {key_path} (mode 600); public key {b64(public)}")
    if args.trust_list:
        trust_path = Path(args.trust_list)
        trust = load_json(trust_path, {"v": 1, "keys": {}})
        keys = trust.setdefault("keys", {})
        if args.kid in keys and not args.force:
            raise UsageError(f"{trust_path} already trusts a key {args.kid}; use a new key id per key (--force)")
        keys[args.kid] = entry
        write_atomic(trust_path, json.dumps(trust, indent=2, sort_keys=True) + "\n")
        print(f"trust list {trust_path}: added {args.kid}")
    return 0


def _load_issuer_key(path: Path) -> tuple[str, Ed25519PrivateKey]:
    obj = load_json(path, {})
    try:
        seed = base64.b64decode(obj["private_key"], validate=True)
        return str(obj["kid"]), Ed25519PrivateKey.from_private_bytes(seed)
    except (KeyError, ValueError, TypeError):
        raise UsageError(f"{path}: not an issuer key file written by `keygen`") from None


def cmd_issue(args: argparse.Namespace) -> int:
    kid, key = _load_issuer_key(Path(args.key))
    holder = read_stdin_line("the holder id")
    issued = args.issued_at if args.issued_at is not None else int(time.time())
    expires = args.expires_at if args.expires_at is not None else issued + args.valid_for
    try:
        body = protocol.pass_body(holder, args.kind, args.color, issued, expires, kid)
    except protocol.ProtocolError as err:
        raise UsageError(f"cannot issue: {err.detail or err.reason}") from None
    print(protocol.encode_pass(body, key.sign(protocol.pass_signing_input(body))))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    raw = read_stdin_line("the QR text")
    hasher = HolderHasher(load_secret(args.secret_file))
    verifier = SignedPassVerifier(args.trust_list, hasher, args.revocations, skew_s=args.skew)
    at = args.at if args.at is not None else int(time.time())
    v = verifier.verify("unknown", raw, at)
    print(json.dumps({"color": v.color, "valid": v.valid, "reason": v.reason, "holder_ref": v.holder_ref}))
    return 0 if v.valid else 1


def cmd_revoke(args: argparse.Namespace) -> int:
    hasher = HolderHasher(load_secret(args.secret_file))
    entry: dict[str, Any]
    if args.holder_stdin:
        entry = {"holder_ref": hasher.holder_ref(read_stdin_line("the holder id"))}
        if args.issued_before is not None:
            entry["issued_before"] = args.issued_before
    else:
        if args.issued_before is not None:
            raise UsageError("--issued-before goes with --holder-stdin")
        try:
            _, signing_input, _ = protocol.decode_pass(read_stdin_line("the QR text"))
        except protocol.ProtocolError as err:
            raise UsageError(f"not a signed pass: {err.detail}") from None
        entry = {"pass_ref": hasher.pass_ref(signing_input)}
    entry["at"] = int(time.time())
    if args.note:
        entry["note"] = args.note
    path = Path(args.revocations)
    revs = load_json(path, {"v": 1, "revoked": []})
    revs.setdefault("revoked", []).append(entry)
    write_atomic(path, json.dumps(revs, indent=2, sort_keys=True) + "\n")
    ref = entry.get("holder_ref") or entry["pass_ref"]
    print(f"revocation list {path}: revoked {'holder' if 'holder_ref' in entry else 'pass'} {ref}"
          f" ({len(revs['revoked'])} entries); gateways pick it up within a second")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.passes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("secret", help="generate a district secret (base64 of 32 random bytes, mode 600)")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="replace an existing secret (changes every holder_ref)")
    p.set_defaults(func=cmd_secret)

    p = sub.add_parser("keygen", help="generate an issuer key; add its public half to a trust list")
    p.add_argument("--kid", required=True, help="key id, [A-Za-z0-9_-]{1,32}, e.g. gz-health-2026")
    p.add_argument("--key", required=True, help="where to write the private key (JSON, mode 600)")
    p.add_argument("--trust-list", help="trust list JSON to add the public key to (created if missing)")
    p.add_argument("--valid-from", type=parse_time, help="passes issued before this are refused (key_not_valid)")
    p.add_argument("--valid-until", type=parse_time, help="passes issued from this time on are refused")
    p.add_argument("--kinds", nargs="+", choices=protocol.PASS_KINDS, help="pass kinds this key may sign")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("issue", help="sign a pass for the holder id read from stdin; prints the QR text")
    p.add_argument("--key", required=True, help="issuer key file from keygen")
    p.add_argument("--kind", choices=protocol.PASS_KINDS, default="health")
    p.add_argument("--color", choices=protocol.COLORS, required=True)
    p.add_argument("--issued-at", type=parse_time)
    p.add_argument("--valid-for", type=parse_duration, default=86400, help="e.g. 24h (default), 7d")
    p.add_argument("--expires-at", type=parse_time)
    p.set_defaults(func=cmd_issue)

    p = sub.add_parser("verify", help="check the QR text read from stdin as a gateway would; prints the verdict")
    p.add_argument("--trust-list", required=True)
    p.add_argument("--revocations")
    p.add_argument("--secret-file")
    p.add_argument("--at", type=parse_time, help="check as of this time (default: now)")
    p.add_argument("--skew", type=int, default=60, help="clock skew tolerated around iat/exp, s")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("revoke", help="add a holder (all or older passes) or one pass to a revocation list")
    p.add_argument("--revocations", required=True, help="revocation list JSON (created if missing)")
    p.add_argument("--secret-file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--holder-stdin", action="store_true", help="read the holder id from stdin")
    what.add_argument("--pass-stdin", action="store_true", help="read one pass's QR text from stdin")
    p.add_argument("--issued-before", type=parse_time, help="revoke only the holder's passes issued before this")
    p.add_argument("--note", help="why (no personal data: it is stored as is)")
    p.set_defaults(func=cmd_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ConfigError, protocol.ProtocolError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
