"""Kiosk configuration: a declarative schema, config.json with a last-good fallback, and the
gateway's retained `config` applied on top, all or nothing.

API:
    store = Store(fs)                    # fs: open/rename/remove on the board's flash
    cfg, problem = store.load()          # problem None, or one line for a `fault` event (part "config")
    cfg, errors = store.apply_remote(settings)   # `settings` of a retained {"v":1,"settings":{...}};
                                         # errors [] -> applied and persisted; else cfg unchanged
    store.cfg, store.hash                # the effective config and its config_hash (for every event
                                         # and the birth message)
    validate(data, remote=False) -> (cfg, errors)  # pure: DEFAULTS + data, or None and errors
    config_hash(cfg) / screening_hash(cfg)         # protocol.config_hash over HASH_KEYS
    expected_hash(settings, local=None)  # what a kiosk reports after applying `settings` (gateway)
    load_checked(fs) -> (cfg, problem);  load(fs) -> cfg (the foundation's call; never raises)

Layers, lowest first: DEFAULTS <- config.json (local, written by the technician) <- the remote
settings (the gateway's retained message, persisted in config.remote.json so thresholds survive
a reboot with no network). A remote message states the whole desired remote layer: keys it leaves
out go back to the local value, `{}` clears it.

Loading never raises and never leaves the kiosk without a config:
  config.json valid            -> used; copied to config.good.json (tmp + rename) if it changed
  missing/corrupt/invalid      -> config.good.json if that is valid, else DEFAULTS;
                                  `problem` says which file was wrong, why, and what is used now
  config.remote.json invalid   -> ignored (local layer only), and said so in `problem`

Every error names the key: "fever_c: 39.5 is outside 37.0..38.5", "colour: unknown setting",
"checkpoint: local-only, may not be set remotely". Unknown keys are rejected, not ignored: a
misspelt threshold must not silently leave the default in force. Threshold bounds come from
kiosk.screening.BOUNDS (the single source of truth).
"""

import json

from kiosk import protocol, screening

CONFIG_FILE = "config.json"
GOOD_FILE = "config.good.json"
REMOTE_FILE = "config.remote.json"
MAX_FILE = 8192  # bytes; a real config is ~1 KiB

# Kinds: "id" (protocol.check_id), "dir", "host", "text" (printable, may be empty), "int", "num",
# "baud". Row: key -> (kind, lo, hi, remote_ok). Bounds are inclusive; for text, lengths.
SCHEMA = {
    # identity and network: local only (a remote config could otherwise strand the kiosk)
    "checkpoint": ("id", 1, 32, False),
    "kiosk": ("id", 1, 32, False),
    "lane": ("id", 1, 32, False),
    "dir": ("dir", 0, 0, False),
    "broker_host": ("host", 1, 64, False),
    "broker_port": ("int", 1, 65535, False),
    "broker_user": ("text", 0, 64, False),
    "broker_password": ("text", 0, 64, False),
    "wifi_ssid": ("text", 0, 32, False),        # 802.11: SSID <= 32 octets
    "wifi_password": ("text", 0, 64, False),    # WPA2: 8..63 passphrase or 64 hex; "" = open/none
    "ntp_host": ("host", 0, 64, False),         # "" = no NTP, clock from the gateway only
    "scanner_baud": ("baud", 0, 0, False),      # 0 = the board profile's
    # link and reporting
    "keepalive_s": ("int", 2, 1200, True),
    "telemetry_s": ("int", 1, 3600, True),
    # measurement and decision
    "frame_hz": ("int", 1, 16, True),           # full frames/s (MLX90640 subpage rate / 2)
    "warmup_ms": ("int", 0, 600000, True),      # sensor Ta must hold steady this long before decisions
    "scanner_repeat_ms": ("int", 0, 60000, True),
    "verdict_timeout_ms": ("int", 100, 5000, True),
}
for _key in screening.BOUNDS:
    _lo, _hi = screening.BOUNDS[_key]
    SCHEMA[_key] = ("int" if isinstance(screening.DEFAULTS[_key], int) else "num", _lo, _hi, True)

DEFAULTS = {
    "checkpoint": "cp-demo",
    "kiosk": "k1",
    "lane": "L1",
    "dir": "in",
    "broker_host": "192.168.4.1",
    "broker_port": 1883,
    "broker_user": "",
    "broker_password": "",
    "wifi_ssid": "",
    "wifi_password": "",
    "ntp_host": "",
    "scanner_baud": 0,
    "keepalive_s": 30,
    "telemetry_s": 10,
    "frame_hz": 4,
    "warmup_ms": 60000,  # the datasheet allows minutes of drift after power-up
    "scanner_repeat_ms": 3000,
    "verdict_timeout_ms": 300,
}
DEFAULTS.update(screening.DEFAULTS)

BAUDS = (0, 9600, 19200, 38400, 57600, 115200)
LOCAL_ONLY = tuple(sorted(k for k in SCHEMA if not SCHEMA[k][3]))
REMOTE_KEYS = tuple(sorted(k for k in SCHEMA if SCHEMA[k][3]))
# What changes how people are screened or what is recorded about them: into config_hash.
# (Link tuning - keepalive_s, telemetry_s - does not.)
HASH_KEYS = tuple(sorted(k for k in REMOTE_KEYS if k not in ("keepalive_s", "telemetry_s")))
SCREENING_KEYS = HASH_KEYS  # the foundation's name


class ConfigError(ValueError):
    pass


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_host(v):
    for c in v:
        if not (("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in ".-:"):
            return False
    return True


def _is_text(v):
    for c in v:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            return False
    return True


def check_value(key, value):
    """None if `value` is a valid `key`, else the reason (without the key)."""
    kind, lo, hi, _ = SCHEMA[key]
    if kind == "int":
        if not _is_int(value):
            return "must be an integer, got " + _show(value)
    elif kind == "num":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return "must be a number, got " + _show(value)
    elif kind == "baud":
        if not _is_int(value) or value not in BAUDS:
            return "must be one of " + ", ".join(str(b) for b in BAUDS) + " (0: the board's), got " + _show(value)
        return None
    elif kind == "dir":
        if value not in protocol.DIRECTIONS:
            return "must be in or out, got " + _show(value)
        return None
    elif not isinstance(value, str):
        return "must be a string, got " + _show(value)
    elif kind == "id":
        try:
            protocol.check_id(value, key)
        except protocol.ProtocolError as err:
            return err.detail[len(key) + 1:] if err.detail.startswith(key + " ") else err.detail
        return None
    if kind in ("host", "text"):
        if not lo <= len(value) <= hi:
            return "must be %d..%d characters long" % (lo, hi)
        if kind == "host" and not _is_host(value):
            return "must be a host name or IP address"
        if kind == "text" and not _is_text(value):
            return "may not contain control characters"
        return None
    if value < lo or value > hi:
        return _show(value) + " is outside " + str(lo) + ".." + str(hi)
    return None


def _show(value):
    if isinstance(value, str):
        return "text " + repr(value[:20])
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return repr(value)


def _cross(cfg):
    """Rules between settings, after each passed on its own."""
    errors = []
    if cfg["fever_c"] - cfg["recheck_band_c"] <= cfg["min_core_c"]:
        errors.append("recheck_band_c: fever_c - recheck_band_c must stay above min_core_c")
    return errors


def validate(data, remote=False, base=None):
    """`base` (DEFAULTS) updated with `data` -> (cfg, []) or (None, ["key: reason", ...]).

    remote=True: only REMOTE_KEYS may appear (identity and network are local-only).
    """
    if not isinstance(data, dict):
        return None, ["config must be a JSON object"]
    cfg = dict(DEFAULTS if base is None else base)
    errors = []
    for key in sorted(data):
        if not isinstance(key, str) or key not in SCHEMA:
            errors.append(str(key)[:40] + ": unknown setting")
            continue
        if remote and not SCHEMA[key][3]:
            errors.append(key + ": local-only, may not be set remotely")
            continue
        why = check_value(key, data[key])
        if why is not None:
            errors.append(key + ": " + why)
            continue
        cfg[key] = data[key]
    if not errors:
        errors = _cross(cfg)
    if errors:
        return None, errors
    return cfg, []


def config_hash(cfg):
    """protocol.config_hash over HASH_KEYS of an effective config."""
    return protocol.config_hash({k: cfg[k] for k in HASH_KEYS})


screening_hash = config_hash


def expected_hash(settings, local=None):
    """The hash a kiosk with `local` config (DEFAULTS) reports once `settings` are applied."""
    cfg, errors = validate(settings, remote=True, base=local)
    if errors:
        raise ConfigError("; ".join(errors))
    return config_hash(cfg)


def _read(fs, name):
    """-> (data, None) or (None, reason). Reads at most MAX_FILE bytes."""
    try:
        with fs.open(name, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError:
        return None, "missing"
    if len(raw) > MAX_FILE:
        return None, "larger than " + str(MAX_FILE) + " bytes"
    if not raw.strip():
        return None, "empty"
    try:
        data = json.loads(bytes(raw).decode("utf-8"))
    except (ValueError, UnicodeError):
        return None, "not valid JSON (truncated or corrupt)"
    if not isinstance(data, dict):
        return None, "must hold a JSON object"
    return data, None


def write_atomic(fs, name, text):
    """Write via a temporary file renamed over `name`: a power cut leaves old or new, never half."""
    tmp = name + ".tmp"
    with fs.open(tmp, "w") as f:
        f.write(text)
    fs.rename(tmp, name)


class Store:
    def __init__(self, fs, name=CONFIG_FILE, good=GOOD_FILE, remote=REMOTE_FILE):
        self._fs = fs
        self._name = name
        self._good = good
        self._remote_name = remote
        self.local = dict(DEFAULTS)   # DEFAULTS + config.json (or last good)
        self.remote = {}              # the applied remote settings
        self.cfg = dict(DEFAULTS)     # local + remote: what the kiosk runs with
        self.hash = config_hash(self.cfg)
        self.source = "defaults"      # "file", "last_good" or "defaults"

    def load(self):
        """-> (cfg, problem or None). Never raises on bad files."""
        problems = []
        data, why = _read(self._fs, self._name)
        cfg = None
        if data is not None:
            cfg, errors = validate(data)
            if errors:
                why = "; ".join(errors)
        if cfg is not None:
            self.source = "file"
            self._keep_good(data)
        else:
            good, _ = _read(self._fs, self._good)
            if good is not None:
                cfg, _ = validate(good)
            if cfg is not None:
                self.source = "last_good"
                problems.append(self._name + ": " + why + "; using the last good config")
            else:
                cfg = dict(DEFAULTS)
                self.source = "defaults"
                problems.append(self._name + ": " + why + "; no valid last good config, using safe defaults")
        self.local = cfg
        self.remote = {}
        self.cfg = cfg
        remote, rwhy = _read(self._fs, self._remote_name)
        if remote is not None:
            merged, errors = validate(remote, remote=True, base=cfg)
            if errors:
                problems.append(self._remote_name + ": " + "; ".join(errors) + "; ignored")
            else:
                self.remote = remote
                self.cfg = merged
        elif rwhy != "missing":
            problems.append(self._remote_name + ": " + rwhy + "; ignored")
        self.hash = config_hash(self.cfg)
        return self.cfg, ("; ".join(problems) if problems else None)

    def _keep_good(self, data):
        text = json.dumps(data)
        try:
            with self._fs.open(self._good, "r") as f:
                if f.read() == text:
                    return  # unchanged: spare the flash a write
        except OSError:
            pass
        try:
            write_atomic(self._fs, self._good, text)
        except OSError:
            pass  # flash trouble shows up elsewhere (outbox); the config in RAM is fine

    def apply_remote(self, settings):
        """The gateway's desired remote layer -> (cfg, errors). All or nothing: with any error the
        effective config stays as it was. Persisted before it takes effect."""
        merged, errors = validate(settings, remote=True, base=self.local)
        if errors:
            return self.cfg, errors
        try:
            write_atomic(self._fs, self._remote_name, json.dumps(settings))
        except OSError as err:
            return self.cfg, ["flash: could not persist the remote config (" + str(err) + ")"]
        self.remote = settings
        self.cfg = merged
        self.hash = config_hash(merged)
        return merged, []


def load_checked(fs, name=CONFIG_FILE):
    """-> (cfg, problem or None); see Store.load."""
    return Store(fs, name).load()


def load(fs, name=CONFIG_FILE):
    """-> the effective config dict (the foundation's call). Problems are dropped: prefer
    load_checked (or Store) so they reach a `fault` event."""
    return Store(fs, name).load()[0]
