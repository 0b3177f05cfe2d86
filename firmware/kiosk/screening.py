"""Decision (pass / recheck / fever / invalid), the idle -> measuring -> decision state machine, and
the pairing of scanned codes with temperatures. Pure logic: time comes in as milliseconds.

Decision rules (`decide`), in order:
* no usable estimate, or an implausible one (outside min_core_c..max_core_c) -> "invalid";
* unstable readings (the person moved, or did not stand still long enough) -> "recheck";
* outside the range the calibration data covers (air, distance): estimate within
  max(out_of_range_band_c, uncertainty_k * the reading's 1-SD uncertainty) of fever_c, on either
  side -> "recheck": never "pass" near the threshold,
  and no "fever" on an extrapolated estimate that is only just above it (a wrong "fever" in the
  cold is what travellers must not suffer; a recheck still goes to the clinical thermometer);
* estimate >= fever_c -> "fever";
* estimate in [fever_c - recheck_band_c, fever_c) -> "recheck";
* otherwise "pass".

Pairing (`Screener`): a code and a temperature are one passage only when they come within
pair_window_ms of each other and no frame from the start of that measurement (or the scan, if
earlier) to the later of the two showed more than one person. Otherwise both are recorded unpaired
and the temperature's result becomes "recheck" (its measured result is kept in "measured").
A temperature with no code in its window is recorded on its own with its result unchanged; a code
with no temperature is recorded as a "scan".
"""

# Defaults and the bounds a config may move them within (inclusive). A later config module
# validates against BOUNDS; `settings()` does the same for callers that build their own.
DEFAULTS = {
    "fever_c": 37.3,              # oral-equivalent core temperature at or above which: fever
    "recheck_band_c": 0.2,        # below fever_c by less than this: recheck
    "out_of_range_band_c": 0.5,   # same, when outside the calibration data's air/distance range
    "uncertainty_k": 2.0,         # ... widened to this many SDs of the estimate's uncertainty
    "min_core_c": 34.5,           # estimates outside min..max are a misread face, not a person
    "max_core_c": 43.0,
    "stable_frames": 4,           # consecutive frames that must agree (8 Hz: 0.5 s)
    "stable_spread_c": 0.5,       # ... within this spread (per-pixel noise is 0.28 K rms at 8 Hz)
    "measure_timeout_ms": 3000,   # no stable reading by then: recheck (or invalid if no face)
    "leave_ms": 750,              # nobody in view this long: back to idle
    "max_hold_ms": 15000,         # a decision is shown at most this long, then measure again
    "pair_window_ms": 5000,       # a code and a temperature this close may pair
}
BOUNDS = {
    "fever_c": (37.0, 38.5),
    "recheck_band_c": (0.0, 1.0),
    "out_of_range_band_c": (0.0, 2.0),
    "uncertainty_k": (0.0, 4.0),
    "min_core_c": (30.0, 36.0),
    "max_core_c": (40.0, 45.0),
    "stable_frames": (1, 32),
    "stable_spread_c": (0.1, 2.0),
    "measure_timeout_ms": (500, 20000),
    "leave_ms": (100, 10000),
    "max_hold_ms": (1000, 120000),
    "pair_window_ms": (500, 60000),
}

RESULTS = ("pass", "recheck", "fever", "invalid")
IDLE = "idle"
MEASURING = "measuring"
DECISION = "decision"
# Reading reasons that mean the frame itself was unusable (not merely: nobody there).
BAD_FRAME = ("nan", "range", "flat", "size", "ambient")


def settings(overrides=None):
    """DEFAULTS with `overrides` applied; ValueError for an unknown key or a value out of BOUNDS."""
    cfg = dict(DEFAULTS)
    if overrides:
        for k in overrides:
            if k not in DEFAULTS:
                raise ValueError("unknown screening setting " + str(k))
            v = overrides[k]
            lo, hi = BOUNDS[k]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or v < lo or v > hi:
                raise ValueError("screening setting %s out of bounds: %r" % (k, v))
            cfg[k] = v
    return cfg


def decide(core_c, stable, in_range, cfg=DEFAULTS, uncertainty_c=0.0):
    """The decision for one estimate; see the module docstring for the rules."""
    if core_c is None or core_c != core_c or core_c < cfg["min_core_c"] or core_c > cfg["max_core_c"]:
        return "invalid"
    if not stable:
        return "recheck"
    fever = cfg["fever_c"]
    if not in_range:
        band = cfg["out_of_range_band_c"]
        if uncertainty_c and uncertainty_c == uncertainty_c and cfg["uncertainty_k"] * uncertainty_c > band:
            band = cfg["uncertainty_k"] * uncertainty_c
        if fever - band <= core_c < fever + band:
            return "recheck"
    if core_c >= fever:
        return "fever"
    if core_c >= fever - cfg["recheck_band_c"]:
        return "recheck"
    return "pass"


class Screener:
    """One lane: feed every analysed frame to `frame`, every scanned code to `code`, and collect
    finished records with `records`. Records are dicts:
      {"type": "screening", "result", "measured", "core_c", "skin_c", "ambient_c", "distance_cm",
       "in_range", "people", "code", "paired", "t_ms", "elapsed_ms"}
      {"type": "scan", "code", "paired": False, "t_ms"}
    """

    def __init__(self, cfg=None):
        self.cfg = settings(cfg)
        self.state = IDLE
        self.t_start = 0          # when measuring began
        self.t_seen = 0           # first frame with somebody in view
        self.t_state = 0
        self.t_absent = None      # since when nobody is in view
        self.last_core = None     # last valid estimate while measuring (for a timeout decision)
        self.last = None          # the last decision record
        self.t_multi = None       # last frame with more than one person in view
        self._pending_temp = None
        self._pending_code = None  # (code, t_ms)
        self._out = []

    # -- frames -----------------------------------------------------------------------------
    def frame(self, rd, t_ms):
        """Advance with one thermal Reading; returns the result string when a decision is made."""
        people = rd.people or 0
        if people > 1:
            self.t_multi = t_ms
        if people == 0 and rd.reason not in BAD_FRAME:
            if self.t_absent is None:
                self.t_absent = t_ms
        else:
            self.t_absent = None
        absent_long = self.t_absent is not None and t_ms - self.t_absent >= self.cfg["leave_ms"]

        if self.state == IDLE:
            if people > 0 and rd.reason != "warming" and rd.reason not in BAD_FRAME:
                self._enter(MEASURING, t_ms)
                self.t_start = t_ms
                self.last_core = None
            else:
                return None
        if self.state == MEASURING:
            return self._measure(rd, t_ms, absent_long)
        if self.state == DECISION:
            if absent_long or t_ms - self.t_state >= self.cfg["max_hold_ms"]:
                self._enter(IDLE, t_ms)
        return None

    def _measure(self, rd, t_ms, absent_long):
        if rd.reason == "warming" or absent_long:
            self._enter(IDLE, t_ms)          # walked away (or sensor re-settling): no decision
            return None
        if rd.reason in BAD_FRAME:
            return self._decide("invalid", rd, t_ms)
        if rd.valid:
            self.last_core = rd.core_c
            if rd.stable and rd.people == 1:
                r = decide(rd.core_c, True, rd.in_range, self.cfg, rd.uncertainty_c or 0.0)
                return self._decide(r, rd, t_ms)
        if t_ms - self.t_start >= self.cfg["measure_timeout_ms"]:
            if self.last_core is None:
                return self._decide("invalid", rd, t_ms)        # no readable face
            return self._decide(decide(self.last_core, False, False, self.cfg), rd, t_ms)
        return None

    def _enter(self, state, t_ms):
        self.state = state
        self.t_state = t_ms

    def _decide(self, result, rd, t_ms):
        rec = {"type": "screening", "result": result, "measured": result,
               "core_c": _round(rd.core_c if rd.valid else self.last_core),
               "skin_c": _round(rd.skin_c), "ambient_c": _round(rd.ambient_c),
               "distance_cm": None if rd.distance_m is None else int(rd.distance_m * 100 + 0.5),
               "in_range": bool(rd.in_range), "uncertainty_c": _round(rd.uncertainty_c),
               "people": rd.people, "code": None, "paired": False,
               "t_ms": t_ms, "elapsed_ms": t_ms - self.t_start}
        self.last = rec
        self._enter(DECISION, t_ms)
        self._add_temp(rec, t_ms)
        return result

    # -- codes and pairing ------------------------------------------------------------------
    def code(self, code, t_ms):
        """A code was scanned at t_ms."""
        if self._pending_code is not None:
            # a second code inside the window: two people; nothing pairs
            self._flush_code()
            if self._pending_temp is not None:
                self._flush_temp(ambiguous=True)
        self._pending_code = (code, t_ms)
        if self._pending_temp is not None:
            self._try_pair()

    def _add_temp(self, rec, t_ms):
        if self._pending_temp is not None:
            self._flush_temp(ambiguous=False)
        self._pending_temp = rec
        if self._pending_code is not None:
            self._try_pair()

    def _try_pair(self):
        rec = self._pending_temp
        code, tc = self._pending_code
        tt = rec["t_ms"]
        w = self.cfg["pair_window_ms"]
        if abs(tt - tc) > w:
            if tc < tt:
                self._flush_code()        # the code is too old for this temperature
            else:
                self._flush_temp(ambiguous=False)
            return
        span_start = min(tc, tt - rec["elapsed_ms"])
        crowded = self.t_multi is not None and self.t_multi >= span_start
        if crowded or rec["people"] != 1:
            self._flush_code()
            self._flush_temp(ambiguous=True)
            return
        rec["code"] = code
        rec["paired"] = True
        self._out.append(rec)
        self._pending_temp = None
        self._pending_code = None

    def _flush_temp(self, ambiguous):
        rec = self._pending_temp
        if ambiguous:
            rec["result"] = "recheck"
        self._out.append(rec)
        self._pending_temp = None

    def _flush_code(self):
        code, tc = self._pending_code
        self._out.append({"type": "scan", "code": code, "paired": False, "t_ms": tc})
        self._pending_code = None

    def records(self, t_ms):
        """Finished records (oldest first); pending ones whose window has run out are flushed."""
        w = self.cfg["pair_window_ms"]
        if self._pending_temp is not None and t_ms - self._pending_temp["t_ms"] > w:
            # crowded since the measurement began? then it could not have been paired anyway
            self._flush_temp(ambiguous=False)
        if self._pending_code is not None and t_ms - self._pending_code[1] > w:
            self._flush_code()
        out = self._out
        self._out = []
        return out


def _round(v):
    return None if v is None else int(v * 100 + (0.5 if v >= 0 else -0.5)) / 100
