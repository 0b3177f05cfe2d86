"""Kiosk configuration: config.json on flash merged over safe defaults.

Foundation version: identity, lane and broker settings with type checks; the firmware runtime
issue adds last-good fallback, gateway-pushed config and threshold bounds.
"""

import json

from kiosk import protocol

DEFAULTS = {
    "checkpoint": "cp-demo",
    "kiosk": "k1",
    "lane": "L1",
    "dir": "in",
    "broker_host": "192.168.4.1",
    "broker_port": 1883,
    "keepalive_s": 30,
    "telemetry_s": 10,
    "frame_hz": 4,
    "fever_c": 37.3,
    "pair_window_ms": 5000,
}
# Settings that change how people are screened, and so go into config_hash.
SCREENING_KEYS = ("fever_c", "pair_window_ms", "frame_hz")


class ConfigError(ValueError):
    pass


def _check(cfg):
    for key in ("checkpoint", "kiosk", "lane"):
        try:
            protocol.check_id(cfg[key], key)
        except protocol.ProtocolError as err:
            raise ConfigError(str(err))
    if cfg["dir"] not in protocol.DIRECTIONS:
        raise ConfigError("dir must be in or out")
    for key in ("broker_port", "keepalive_s", "telemetry_s", "pair_window_ms", "frame_hz"):
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(key + " must be a positive integer")
    if not isinstance(cfg["fever_c"], (int, float)) or not 37.0 <= cfg["fever_c"] <= 38.5:
        raise ConfigError("fever_c must be within 37.0-38.5")
    return cfg


def load(fs, name="config.json"):
    """-> validated config dict. A missing file gives the defaults; a bad one raises ConfigError."""
    cfg = dict(DEFAULTS)
    try:
        with fs.open(name, "r") as f:
            text = f.read()
    except OSError:
        return cfg
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(name + " is not JSON")
    if not isinstance(data, dict):
        raise ConfigError(name + " must hold an object")
    cfg.update(data)
    return _check(cfg)


def screening_hash(cfg):
    return protocol.config_hash({k: cfg[k] for k in SCREENING_KEYS})
