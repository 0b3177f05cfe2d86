"""Code verification for `verify` requests: the pluggable interface and the offline signed-pass check.

A `Verifier` turns one scanned code into a `Verdict`:

    verify(kind, raw, now_s) -> Verdict(color, valid, reason, holder_ref)

`kind` is the kiosk's guess (protocol.CODE_KINDS); the verifier decides from `raw` itself, so a
kiosk that guessed wrong still gets the right answer. `now_s` is UTC Unix seconds. A verifier
never raises for anything a kiosk can send: every input gives a Verdict (`SafeVerifier` turns a
crash of a plugged-in verifier into a "none"/"verifier_error" verdict).

Plug point: a provincial platform's online check is another class with the same `verify`
method; `FallbackVerifier(online, offline)` asks the online one first and falls back to the
offline `SignedPassVerifier` when the platform says "unavailable" or raises.

Verdicts (reason -> colour, valid, holder_ref):

| reason | colour | valid | holder_ref | when |
|---|---|---|---|---|
| `ok` | the pass's | true | yes | trusted issuer, good signature, in its time window, not revoked |
| `expired` | red | false | yes | now >= exp + skew |
| `not_yet_valid` | red | false | yes | now < iat - skew |
| `revoked` | red | false | yes | holder or pass on the revocation list |
| `key_not_valid` | red | false | no | pass issued (iat) outside the issuer key's valid_from/valid_until |
| `unknown_issuer` | red | false | no | `kid` not in the trust list |
| `bad_signature` | red | false | no | forged or tampered |
| `malformed` | red | false | no | starts like a signed pass ("SP1.") but is not one |
| `id_card` | none | false | yes | an 18-digit resident ID number with a good check digit |
| `bad_id_checksum` | none | false | no | looks like an ID number, check digit wrong (a misread) |
| `unknown_code` | none | false | no | anything else (other QR codes, garbage) |

holder_ref is given only where the holder identity is authenticated (a good signature by a
trusted key) or read from an ID card: a forger's claimed holder id is not put into tracing.

holder_ref = hex(HMAC-SHA256(district secret, "holder/v1:" + canonical holder id))[:32], that is
the first 16 bytes (128 bits) as 32 lower-case hex digits. The canonical holder id is the id
NFKC-normalised, stripped of surrounding white space and upper-cased, so a pass whose holder id is
an ID number and the ID card itself give the same holder_ref ("11010519491231002x" and
"11010519491231002X" are one person).

Files (see tools/passes.py, which writes them):

- trust list, JSON: {"v": 1, "keys": {"<kid>": {"public_key": "<base64 of the 32-byte raw Ed25519
  key>", "valid_from": <unix s, optional>, "valid_until": <unix s, optional>, "kinds": [optional
  list of "health"/"vehicle"]}}}; a key may also be given as just the base64 string. Standard or
  URL-safe base64, padding optional. TOML with the same structure ([keys.<kid>] tables) is read
  when the file name ends in .toml.
- revocation list, JSON: {"v": 1, "revoked": [{"holder_ref": "<32 hex>", "issued_before": <unix
  s, optional>, "note": "..."}, {"pass_ref": "<32 hex>", "note": "..."}]}. A holder entry revokes
  every pass of that holder issued before `issued_before` (all of them without it), so a holder's
  old green pass can be revoked while the newly issued one works. A pass entry revokes one pass:
  pass_ref = hex(HMAC-SHA256(secret, "pass/v1:" + signing input))[:32]. Both are keyed hashes:
  no raw holder id, and nothing derived from one without the secret (an ID number has too little
  entropy for a plain hash), is ever written to the list.
- district secret: base64 of at least 32 random bytes, one line, in a file readable only by its
  owner (mode 0600 or 0400; a group- or world-readable file is refused), or in the environment
  variable CHECKPOINT_DISTRICT_SECRET. Never in the repo, never logged.

Trust and revocation files are re-read when they change (checked at most once a second); a file
that became unreadable or invalid keeps the last good contents in force and is counted in
`load_errors`. Nothing here logs a raw code or holder id; exceptions are reported by type only.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import hashlib
import json
import logging
import os
import stat
import threading
import time
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk import protocol

log = logging.getLogger("gateway.verifier")

HOLDER_REF_HEX = 32  # 16 bytes of HMAC-SHA256, as hex
MIN_SECRET_BYTES = 32
DEFAULT_SKEW_S = 60  # tolerated clock difference between issuer, gateway and kiosk around iat/exp
RELOAD_CHECK_S = 1.0
SECRET_ENV = "CHECKPOINT_DISTRICT_SECRET"
SECRET_FILE_ENV = "CHECKPOINT_DISTRICT_SECRET_FILE"
NONE = "none"


class ConfigError(ValueError):
    """A trust list, revocation list or secret that cannot be used; the message says why and where."""


@dataclass(frozen=True)
class Verdict:
    color: str  # protocol.CODE_COLORS
    valid: bool
    reason: str
    holder_ref: str | None


class Verifier(Protocol):
    """The plug point. Must not raise for any input; must not log or store `raw`."""

    def verify(self, kind: str, raw: str, now_s: float) -> Verdict: ...


# ---- the district secret and keyed hashes -----------------------------------------------------

def _b64decode(text: str) -> bytes:
    text = text.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text, validate=True)


def load_secret(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> bytes:
    """The district secret from `path`, else $CHECKPOINT_DISTRICT_SECRET_FILE, else $CHECKPOINT_DISTRICT_SECRET."""
    env = dict(os.environ) if env is None else env
    where: str
    if path is None and env.get(SECRET_FILE_ENV):
        path = env[SECRET_FILE_ENV]
    if path is not None:
        p = Path(path)
        try:
            mode = p.stat().st_mode
        except OSError as err:
            raise ConfigError(f"district secret file {p}: {err.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"district secret file {p} is readable by others (mode {stat.S_IMODE(mode):o}); "
                              "chmod 600 it")
        text = p.read_text(encoding="ascii", errors="replace")
        where = f"district secret file {p}"
    elif env.get(SECRET_ENV):
        text = env[SECRET_ENV]
        where = f"${SECRET_ENV}"
    else:
        raise ConfigError(f"no district secret: set {SECRET_FILE_ENV} (a file) or {SECRET_ENV}")
    try:
        secret = _b64decode(text)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} is not base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{where} holds {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed")
    return secret


def canonical_holder(holder: str) -> str:
    """One person, one text: NFKC, surrounding white space removed, upper case."""
    return unicodedata.normalize("NFKC", holder).strip().upper()


class HolderHasher:
    """Keyed hashes with the district secret: holder_ref and pass_ref. Holds the secret; never print it."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"district secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "HolderHasher(<secret>)"

    def _mac(self, label: bytes, data: bytes) -> str:
        return hmac.new(self._secret, label + data, hashlib.sha256).hexdigest()[:HOLDER_REF_HEX]

    def holder_ref(self, holder: str) -> str:
        return self._mac(b"holder/v1:", canonical_holder(holder).encode("utf-8"))

    def pass_ref(self, signing_input: bytes) -> str:
        return self._mac(b"pass/v1:", signing_input)


# ---- resident ID numbers (GB 11643-1999) ------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def looks_like_id(text: str) -> bool:
    t = text.strip()
    return len(t) == 18 and t[:17].isascii() and t[:17].isdigit() and (t[17] in "0123456789Xx")


def id_checksum_ok(text: str) -> bool:
    t = text.strip().upper()
    total = sum(int(c) * w for c, w in zip(t[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == t[17]


# ---- files that reload when they change -------------------------------------------------------

class _WatchedFile:
    """Parses a file now, and again whenever its mtime/size/inode change (checked at most every RELOAD_CHECK_S)."""

    def __init__(self, path: Path, parse: Callable[[Path], Any], what: str) -> None:
        self.path = path
        self.what = what
        self._parse = parse
        self._lock = threading.Lock()
        self._sig = self._signature()
        self.value: Any = parse(path)  # the first load must succeed: a clear error at start
        self._next_check = time.monotonic() + RELOAD_CHECK_S
        self.load_errors = 0
        self.reloads = 0

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def get(self) -> Any:
        now = time.monotonic()
        if now < self._next_check:
            return self.value
        with self._lock:
            if now < self._next_check:
                return self.value
            self._next_check = now + RELOAD_CHECK_S
            sig = self._signature()
            if sig != self._sig:
                self._sig = sig
                try:
                    self.value = self._parse(self.path)
                    self.reloads += 1
                    log.info("%s %s reloaded", self.what, self.path)
                except (ConfigError, OSError) as err:
                    self.load_errors += 1
                    log.error("%s %s not reloaded, the previous contents stay in force: %s", self.what, self.path,
                              err if isinstance(err, ConfigError) else type(err).__name__)
        return self.value


def _read_structured(path: Path, what: str) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{what} {path}: {err.strerror}") from None
    try:
        obj = tomllib.loads(data.decode()) if path.suffix == ".toml" else json.loads(data)
    except (UnicodeError, ValueError) as err:
        raise ConfigError(f"{what} {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({err})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{what} {path}: must be an object")
    if obj.get("v", 1) != 1:
        raise ConfigError(f"{what} {path}: unsupported version v={obj.get('v')!r}")
    return obj


def _opt_time(entry: dict[str, Any], field: str, where: str) -> int | None:
    value = entry.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: {field} must be UTC Unix seconds (a non-negative integer)")
    return value


@dataclass(frozen=True)
class IssuerKey:
    kid: str
    public_key: Ed25519PublicKey
    valid_from: int | None = None
    valid_until: int | None = None
    kinds: tuple[str, ...] = protocol.PASS_KINDS


def parse_trust_list(path: Path) -> dict[str, IssuerKey]:
    obj = _read_structured(path, "trust list")
    keys = obj.get("keys")
    if not isinstance(keys, dict):
        raise ConfigError(f"trust list {path}: needs a 'keys' object (key id -> key)")
    out: dict[str, IssuerKey] = {}
    for kid, entry in keys.items():
        where = f"trust list {path}: key {kid!r}"
        try:
            protocol.check_id(kid, "kid")
        except protocol.ProtocolError:
            raise ConfigError(f"{where}: a key id is 1-32 characters of [A-Za-z0-9_-]") from None
        if isinstance(entry, str):
            entry = {"public_key": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("public_key"), str):
            raise ConfigError(f"{where}: needs public_key (base64 of the 32-byte raw Ed25519 key)")
        unknown = set(entry) - {"public_key", "valid_from", "valid_until", "kinds", "note"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            raw = _b64decode(entry["public_key"])
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: public_key is not base64") from None
        if len(raw) != 32:
            raise ConfigError(f"{where}: public_key is {len(raw)} bytes, an Ed25519 key is 32")
        valid_from = _opt_time(entry, "valid_from", where)
        valid_until = _opt_time(entry, "valid_until", where)
        if valid_from is not None and valid_until is not None and valid_until <= valid_from:
            raise ConfigError(f"{where}: valid_until must be after valid_from")
        kinds = entry.get("kinds", list(protocol.PASS_KINDS))
        if not isinstance(kinds, list) or not kinds or any(k not in protocol.PASS_KINDS for k in kinds):
            raise ConfigError(f"{where}: kinds must be a non-empty list of {', '.join(protocol.PASS_KINDS)}")
        out[kid] = IssuerKey(kid, Ed25519PublicKey.from_public_bytes(raw), valid_from, valid_until, tuple(kinds))
    return out


@dataclass(frozen=True)
class Revocations:
    holders: dict[str, int | None]  # holder_ref -> issued_before (None: every pass)
    passes: frozenset[str]  # pass_ref

    def revoked(self, holder_ref: str, pass_ref: str, iat: int) -> bool:
        if pass_ref in self.passes:
            return True
        if holder_ref in self.holders:
            before = self.holders[holder_ref]
            return before is None or iat < before
        return False


EMPTY_REVOCATIONS = Revocations({}, frozenset())


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and len(value) == HOLDER_REF_HEX and all(c in "0123456789abcdef" for c in value)


def parse_revocations(path: Path) -> Revocations:
    obj = _read_structured(path, "revocation list")
    entries = obj.get("revoked", [])
    if not isinstance(entries, list):
        raise ConfigError(f"revocation list {path}: 'revoked' must be a list")
    holders: dict[str, int | None] = {}
    passes: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"revocation list {path}: entry {i}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be an object")
        unknown = set(entry) - {"holder_ref", "pass_ref", "issued_before", "note", "at"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if ("holder_ref" in entry) == ("pass_ref" in entry):
            raise ConfigError(f"{where}: needs exactly one of holder_ref or pass_ref")
        ref = entry.get("holder_ref", entry.get("pass_ref"))
        if not isinstance(ref, str) or not _is_ref(ref):
            raise ConfigError(f"{where}: a ref is {HOLDER_REF_HEX} lower-case hex digits (an HMAC, never a raw id)")
        before = _opt_time(entry, "issued_before", where)
        if "pass_ref" in entry:
            if before is not None:
                raise ConfigError(f"{where}: issued_before applies to holder_ref entries only")
            passes.add(ref)
        elif ref in holders:  # two entries for one holder: the wider one wins
            old = holders[ref]
            holders[ref] = None if old is None or before is None else max(old, before)
        else:
            holders[ref] = before
    return Revocations(holders, frozenset(passes))


# ---- verifiers --------------------------------------------------------------------------------

class SignedPassVerifier:
    """Offline check of the contract's signed passes against a trust list and a revocation list."""

    def __init__(self, trust_list: str | os.PathLike[str], hasher: HolderHasher,
                 revocations: str | os.PathLike[str] | None = None, skew_s: int = DEFAULT_SKEW_S) -> None:
        self.hasher = hasher
        self.skew_s = skew_s
        self._trust = _WatchedFile(Path(trust_list), parse_trust_list, "trust list")
        self._revocations = (_WatchedFile(Path(revocations), parse_revocations, "revocation list")
                             if revocations is not None else None)

    @property
    def load_errors(self) -> int:
        return self._trust.load_errors + (self._revocations.load_errors if self._revocations else 0)

    def verify(self, kind: str, raw: str, now_s: float) -> Verdict:
        if protocol.is_signed_pass(raw):
            return self._verify_pass(raw, now_s)
        if looks_like_id(raw):
            if id_checksum_ok(raw):
                return Verdict(NONE, False, "id_card", self.hasher.holder_ref(raw))
            return Verdict(NONE, False, "bad_id_checksum", None)
        return Verdict(NONE, False, "unknown_code", None)

    def _verify_pass(self, raw: str, now_s: float) -> Verdict:
        try:
            body, signing_input, signature = protocol.decode_pass(raw)
        except (protocol.ProtocolError, RecursionError, TypeError, ValueError):
            return Verdict("red", False, "malformed", None)
        keys: dict[str, IssuerKey] = self._trust.get()
        key = keys.get(body["kid"])
        if key is None:
            return Verdict("red", False, "unknown_issuer", None)
        try:
            key.public_key.verify(signature, signing_input)
        except InvalidSignature:
            return Verdict("red", False, "bad_signature", None)
        iat, exp = body["iat"], body["exp"]
        if ((key.valid_from is not None and iat < key.valid_from)
                or (key.valid_until is not None and iat >= key.valid_until) or body["k"] not in key.kinds):
            return Verdict("red", False, "key_not_valid", None)
        holder_ref = self.hasher.holder_ref(body["h"])
        if now_s < iat - self.skew_s:
            return Verdict("red", False, "not_yet_valid", holder_ref)
        if now_s >= exp + self.skew_s:
            return Verdict("red", False, "expired", holder_ref)
        if self._revocations is not None:
            revocations: Revocations = self._revocations.get()
            if revocations.revoked(holder_ref, self.hasher.pass_ref(signing_input), iat):
                return Verdict("red", False, "revoked", holder_ref)
        return Verdict(body["c"], True, "ok", holder_ref)


class FallbackVerifier:
    """Ask `primary` (say, a provincial platform online); use `fallback` when it is unavailable or fails."""

    UNAVAILABLE = "unavailable"

    def __init__(self, primary: Verifier, fallback: Verifier) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fallbacks = 0

    def verify(self, kind: str, raw: str, now_s: float) -> Verdict:
        try:
            verdict = self.primary.verify(kind, raw, now_s)
        except Exception as err:  # noqa: BLE001 - the platform failing is what the fallback is for
            log.warning("primary verifier failed (%s), using the fallback", type(err).__name__)
            verdict = None
        if verdict is None or verdict.reason == self.UNAVAILABLE:
            self.fallbacks += 1
            return self.fallback.verify(kind, raw, now_s)
        return verdict


class SafeVerifier:
    """Wraps any verifier: a crash or a malformed Verdict becomes "none"/"verifier_error", never green."""

    def __init__(self, inner: Verifier) -> None:
        self.inner = inner
        self.errors = 0

    def verify(self, kind: str, raw: str, now_s: float) -> Verdict:
        try:
            verdict = self.inner.verify(kind, raw, now_s)
            if (isinstance(verdict, Verdict) and verdict.color in protocol.CODE_COLORS
                    and isinstance(verdict.valid, bool) and isinstance(verdict.reason, str)
                    and (verdict.holder_ref is None or isinstance(verdict.holder_ref, str))):
                return verdict
        except Exception as err:  # noqa: BLE001 - a verdict must always go out
            # Type only: an exception's text may quote the code (UnicodeError does).
            log.error("verifier raised %s", type(err).__name__)
        self.errors += 1
        return Verdict(NONE, False, "verifier_error", None)
