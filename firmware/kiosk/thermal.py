"""Frame -> person, face, hot spot, distance, and an estimated core temperature (pure logic).

Input is one thermal frame: array('f', 768) of object temperatures in degC, index = row*32 + col,
24 rows x 32 columns, row 0 at the top, from a driver set to emissivity 0.98 and reflected
temperature = air (skin then reads its true temperature). Ambient is the AIR temperature from the
separate air sensor, never the MLX90640's own Ta (which runs several degrees warmer).

Pipeline, per frame (`Analyzer.update`):
1. warm-up: the reading is "warming" until the sensor's Ta has moved less than `warmup_tol_c`
   over `warmup_ms` (MLX90640 datasheet: accuracy is specified after thermal settling);
2. frame check: NaN/inf, out-of-range or all-equal pixels -> invalid (never an exception);
3. person: pixels that differ from the air temperature AND from a per-pixel background model
   (learned while nobody is there, so a sunny wall or a heater behind the lane is ignored), inside
   the range a body surface can have; 4-connected blobs; heads counted on each blob's skyline;
4. face = upper part of the nearest blob (16 cm below its top); hot spot = mean of the hottest
   `hot_pixels` (2: the two inner canthi; 1 or 3 fitted worse) pixels there (inner canthi and
   forehead, the sites IEC 80601-2-59 recommends);
5. distance from the head's width in pixels (sub-pixel edges) and the lens field of view;
6. stability: the hot spot of `stable_frames` consecutive frames agrees within `stable_spread_c`;
7. sharp-camera equivalent of the hot spot (`sharp_equivalent`), then `core_estimate`.

Carrying the calibration from sharp cameras to a 32x24 sensor
--------------------------------------------------------------
The calibration data (PhysioNet face-oral-temp, Wang et al. 2022) used 320x240/640x480 cameras
whose face maximum is a true point temperature. One MLX90640 pixel at 0.6 m is ~1.8 cm (55 deg) or
~5 cm (110 deg) wide, larger than an inner canthus (~1 cm), so a pixel mixes the canthus with the
cooler skin around it (and, for small faces, the background), and the lens spreads each point over
neighbours. So the hottest pixels read LOW by an amount that grows with the pixel footprint and
with the face's internal contrast, which itself scales with (skin - air). `sharp_equivalent` adds
that loss back as a function of footprint and (37 - air) (see S0..S4), fitted by tools/calibrate_core.py on
the simulator (sim/scene.py renders the face at 6x6 supersampling with the sensor's PSF and noise,
and knows the sharp face maximum). Averaging the hottest few pixels and a few frames cuts the
noise (0.28 K rms per pixel at 8 Hz); the small upward bias of picking the hottest noisy pixels is
in the same fit. This step rests on the simulator's face pattern, not on measured data: a kiosk
model should be checked against a blackbody and a clinical thermometer before use.
"""
from array import array
import math

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

ROWS = const(24)
COLS = const(32)
NPIX = const(768)

# Plausible object temperatures for a working sensor in a screening lane (degC).
FRAME_MIN_C = -40.0
FRAME_MAX_C = 150.0
# A body surface (skin, hair, clothes) cannot be hotter than this; hotter blobs are engines, lamps.
BODY_MAX_C = 42.5
# The hottest face pixel of a living person at a screening lane is at least this (cold, windy: ~27).
FACE_MIN_C = 24.0
FLAT_SPAN_C = 0.05        # a frame whose pixels span less than this is "all equal": a dead sensor
MIN_BLOB_PX = 4           # smaller blobs are noise or the edge of a hot object
INTERIOR_MIN_PX = 5.0     # head at least this wide (px): take the hot spot from interior pixels only
MAX_BLOBS = 8

# Vertical FOV for each horizontal FOV (MLX90640 BAB 55x35, BAA 110x75 deg).
_VFOV = {55: 35.0, 110: 75.0}

# Average head breadth that the blob width measures, metres (adult head breadth 14-16 cm,
# anthropometric surveys; effective value fitted against the simulator's rendering with PSF blur).
HEAD_WIDTH_M = 0.1473     # fitted, `tools/calibrate_core.py --optics`
WIDTH_BLUR_PX = 1.541     # blob widening by the lens PSF and the sub-pixel edge rule (same fit)
FACE_DEPTH_M = 0.16       # face ROI: from the top of the head blob down this far (below the eyes)

# ---- core model, fitted by tools/calibrate_core.py (see core_estimate) ----
# core = skin + C0 + C1 * (T_REF_C - air) + C2 * (T_REF_C - air)**2 + C3 * max(0, air - 29)
# Fitted: `python tools/calibrate_core.py --shape --level` (face-oral-temp group 1 FLIR+ICI, oral
# monitor mode, n=1081; simulator physiology, 2000 people, air -10..40 degC, still air).
T_REF_C = 37.0
C0 = -0.0802      # level, facial data (the simulator alone gives -0.058)
C1 = 0.07682      # per degC of (37 - air): ~h/(h+K) of the canthus in still air
C2 = 0.000025     # curvature of h with temperature: negligible over -10..40 degC
C3 = 0.01631      # per degC of air above 29: sweating cools the forehead part of the face maximum
# Partial-pixel loss of the hottest pixels (see the module docstring), fitted by
# `python tools/calibrate_core.py --optics` on rendered frames (55 and 110 deg, 0.3-1.5 m, -10..40 degC):
# sharp = hot + (T_REF_C - air) * (S0 + S1 * fp) + S2 + S3 * fp + S4 * fp**2, fp = pixel footprint, cm.
# Fitted residual SD 0.27 degC (MAE 0.15-0.25 by distance band, simulated; 800 scenes, 2 rounds). Simulator-only: check on a real
# kiosk against a clinical thermometer before trusting it.
S0 = 0.04452
S1 = 0.00519
S2 = -1.02077
S3 = 0.34723
S4 = -0.03292
# Beyond this pixel footprint the face is too few pixels to measure (55 deg: ~2 m; 110 deg: ~0.7 m).
MAX_FOOTPRINT_CM = 6.5
# Range the calibration data covers (face-oral-temp group 1: air 20.2-24.0 degC, 0.54-0.92 m).
AIR_RANGE_C = (20.0, 24.0)
DIST_RANGE_M = (0.5, 0.95)


def core_estimate(skin_c, ambient_c, distance_m):
    """Estimated core (oral) temperature from a sharp-camera-equivalent facial hot spot.

    Returns (core_c, in_range): in_range is False when air temperature or distance lie outside what
    the calibration data covers; the decision must then be conservative.

    Model: core = skin + offset(air). The steady heat balance of a facial site (two-node model,
    Gagge 1971; see sim/scene.py) with constant tissue conductance in the head (Froese & Burton
    1957) makes core - skin = (core - air) * h / (h + K): linear in air, C1 ~ h/(h+K); C2 absorbs
    the temperature dependence of h (free convection ~dT^0.25, radiation ~T^3) and C3 forehead
    sweating above 29 degC air. The slope on skin is kept at exactly 1 (the constant-offset form the
    facial-data authors found best for fever detection): a regression slope below 1 would lower the
    reading of exactly the people who are hot. Shape C1..C3: fitted on the simulator's physiology
    over air -10..40 degC; level C0: on the facial data (oral, monitor mode, both cameras) - both
    by tools/calibrate_core.py. Distance does not enter here: in the facial data its effect is small
    and of opposite sign for the two cameras; for this sensor, distance enters `sharp_equivalent`.
    """
    a = T_REF_C - ambient_c
    core = skin_c + C0 + C1 * a + C2 * a * a
    if ambient_c > 29.0:
        core += C3 * (ambient_c - 29.0)
    in_range = (AIR_RANGE_C[0] <= ambient_c <= AIR_RANGE_C[1]
                and DIST_RANGE_M[0] <= distance_m <= DIST_RANGE_M[1])
    return core, in_range


# Expected error (1 SD) of the estimate, used to widen the recheck band outside the data's range:
# person-to-person spread of the offset grows with (37 - air) because tissue conductance varies
# between people (simulator assumption: 15 % SD, plus 0.15 degC additive; see sim/scene.py), and the
# partial-pixel correction grows with the footprint (calibrate_core.py --optics residuals).
U_ADD_C = 0.15
U_REL = 0.15
U_FP = 0.05


def uncertainty_c(ambient_c, distance_m, fov_deg=55.0):
    """1-SD uncertainty of core_estimate + sharp_equivalent for this air temperature and distance."""
    a = U_REL * C1 * (T_REF_C - ambient_c)
    f = U_FP * 100.0 * pixel_footprint_m(distance_m, fov_deg)
    return math.sqrt(U_ADD_C * U_ADD_C + a * a + f * f)


def pixel_footprint_m(distance_m, fov_deg=55.0):
    """Width of one pixel's field at `distance_m` (horizontal)."""
    return 2.0 * distance_m * math.tan(math.radians(fov_deg) / 2.0) / COLS


def sharp_equivalent(hot_c, ambient_c, distance_m, fov_deg=55.0):
    """What a sharp camera's face maximum would read, from the mean of the hottest sensor pixels."""
    fp = 100.0 * pixel_footprint_m(distance_m, fov_deg)
    return hot_c + (T_REF_C - ambient_c) * (S0 + S1 * fp) + S2 + S3 * fp + S4 * fp * fp


def frame_problem(frame):
    """None if the frame is usable, else a short reason: 'size', 'nan', 'range' or 'flat'."""
    if frame is None or len(frame) != NPIX:
        return "size"
    lo = 1e9
    hi = -1e9
    for v in frame:
        if v != v:                      # NaN is the only value not equal to itself
            return "nan"
        if v < FRAME_MIN_C or v > FRAME_MAX_C:   # also catches +-inf
            return "range"
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    if hi - lo < FLAT_SPAN_C:
        return "flat"
    return None


class WarmUp:
    """Sensor settling: warmed once Ta moved less than tol_c over a window of window_ms."""

    def __init__(self, window_ms=60000, tol_c=0.2):
        self.window_ms = window_ms
        self.tol_c = tol_c
        self.reset()

    def reset(self):
        self.t0 = None
        self.ta0 = 0.0
        self.warm = False

    def update(self, ta_c, t_ms):
        if self.warm:
            return True
        if ta_c is None or ta_c != ta_c:
            return False
        if self.t0 is None:
            self.t0, self.ta0 = t_ms, ta_c
            return False
        if abs(ta_c - self.ta0) > self.tol_c:
            self.t0, self.ta0 = t_ms, ta_c      # still drifting: restart the window
        elif t_ms - self.t0 >= self.window_ms:
            self.warm = True
        return self.warm


class Stability:
    """Ring of the last n values; stable when n values are in and they agree within spread_c."""

    def __init__(self, n=4, spread_c=0.3):
        self.n = n
        self.spread_c = spread_c
        self.buf = array("f", [0.0] * n)
        self.clear()

    def clear(self):
        self.count = 0
        self.pos = 0

    def push(self, v):
        self.buf[self.pos] = v
        self.pos = (self.pos + 1) % self.n
        if self.count < self.n:
            self.count += 1

    def mean(self):
        if self.count == 0:
            return None
        s = 0.0
        for i in range(self.count):
            s += self.buf[i]
        return s / self.count

    def spread(self):
        lo = 1e9
        hi = -1e9
        for i in range(self.count):
            v = self.buf[i]
            lo = v if v < lo else lo
            hi = v if v > hi else hi
        return hi - lo if self.count else 0.0

    def stable(self):
        return self.count >= self.n and self.spread() <= self.spread_c


class Reading:
    """Result of one frame; one instance per Analyzer, updated in place (no per-frame allocation)."""

    def __init__(self):
        self.clear(0)

    def clear(self, t_ms):
        self.t_ms = t_ms
        self.valid = False      # True when core_c is a usable estimate for this frame
        self.reason = ""        # why not valid: warming, nan, range, flat, size, no_person, no_face
        self.people = 0
        self.hot_c = None       # mean of the hottest face pixels, this frame
        self.skin_c = None      # sharp-equivalent hot spot, averaged over the stability window
        self.distance_m = None
        self.width_px = 0.0     # head width in pixels (sub-pixel edges)
        self.core_c = None
        self.in_range = False
        self.uncertainty_c = None  # 1-SD expected error of core_c
        self.stable = False
        self.ambient_c = None

    def as_dict(self):
        return {"t_ms": self.t_ms, "valid": self.valid, "reason": self.reason, "people": self.people,
                "hot_c": self.hot_c, "skin_c": self.skin_c, "distance_m": self.distance_m,
                "core_c": self.core_c, "in_range": self.in_range, "uncertainty_c": self.uncertainty_c, "stable": self.stable,
                "ambient_c": self.ambient_c}


class Analyzer:
    """Stateful frame analysis for one sensor (background model, warm-up, stability)."""

    def __init__(self, fov_deg=55.0, hot_pixels=2, stable_frames=4, stable_spread_c=0.5,
                 warmup_ms=60000, warmup_tol_c=0.2, bg_alpha=0.0625):
        if fov_deg <= 0 or fov_deg >= 180 or hot_pixels < 1 or stable_frames < 1:
            raise ValueError("bad thermal parameters")
        self.fov_deg = fov_deg
        vfov = _VFOV.get(int(fov_deg + 0.5), fov_deg * 0.68)
        # metres per column / per row at 1 m
        self._m_col = 2.0 * math.tan(math.radians(fov_deg) / 2.0) / COLS
        self._m_row = 2.0 * math.tan(math.radians(vfov) / 2.0) / ROWS
        self.hot_pixels = hot_pixels
        d_max = MAX_FOOTPRINT_CM / 100.0 / self._m_col
        self._min_rows = max(2, int(FACE_DEPTH_M / (d_max * self._m_row) + 0.5))
        self.bg_alpha = bg_alpha
        self.warmup = WarmUp(warmup_ms, warmup_tol_c)
        self.stab = Stability(stable_frames, stable_spread_c)
        self.dist = Stability(stable_frames, 1.0)
        self.bg = array("f", [0.0] * NPIX)
        self.bg_ready = False
        self.label = bytearray(NPIX)            # 0 = background, 255 = foreground unlabelled, 1.. blob
        self._stack = array("H", [0] * NPIX)
        self._top = array("f", [0.0] * hot_pixels)
        self._sky = bytearray(COLS)
        self._blob_n = array("H", [0] * (MAX_BLOBS + 1))
        self._blob_top = bytearray(MAX_BLOBS + 1)
        self.reading = Reading()

    # -- background -------------------------------------------------------------------------
    def _update_background(self, frame):
        a = self.bg_alpha
        bg = self.bg
        if not self.bg_ready:
            for i in range(NPIX):
                bg[i] = frame[i]
            self.bg_ready = True
            return
        lab = self.label
        for i in range(NPIX):
            if lab[i] == 0:
                bg[i] += a * (frame[i] - bg[i])

    # -- segmentation -----------------------------------------------------------------------
    def _mark(self, frame, ambient_c):
        """Foreground: differs from air by dmin and from the learned background by 1.5 degC."""
        dmin = 0.25 * (34.0 - ambient_c)
        if dmin < 2.0:
            dmin = 2.0
        bg = self.bg
        use_bg = self.bg_ready
        lab = self.label
        for i in range(NPIX):
            v = frame[i]
            fg = v <= BODY_MAX_C and (v - ambient_c >= dmin or ambient_c - v >= dmin)
            if fg and use_bg and abs(v - bg[i]) < 1.5:
                fg = False
            lab[i] = 255 if fg else 0

    def _label(self):
        """4-connected blobs, labels 1..MAX_BLOBS (largest kept if more); returns blob count."""
        lab = self.label
        st = self._stack
        nb = 0
        for seed in range(NPIX):
            if lab[seed] != 255:
                continue
            if nb >= MAX_BLOBS:
                lab[seed] = 0
                continue
            nb += 1
            lab[seed] = nb
            sp = 0
            st[sp] = seed
            sp += 1
            n = 0
            top = seed // COLS
            while sp:
                sp -= 1
                i = st[sp]
                n += 1
                r = i // COLS
                c = i - r * COLS
                if r < top:
                    top = r
                if c > 0 and lab[i - 1] == 255:
                    lab[i - 1] = nb
                    st[sp] = i - 1
                    sp += 1
                if c < COLS - 1 and lab[i + 1] == 255:
                    lab[i + 1] = nb
                    st[sp] = i + 1
                    sp += 1
                if r > 0 and lab[i - COLS] == 255:
                    lab[i - COLS] = nb
                    st[sp] = i - COLS
                    sp += 1
                if r < ROWS - 1 and lab[i + COLS] == 255:
                    lab[i + COLS] = nb
                    st[sp] = i + COLS
                    sp += 1
            self._blob_n[nb] = n
            self._blob_top[nb] = top
        return nb

    def _heads(self, b):
        """Heads on blob b: summits of its skyline separated by a valley deeper than 2 rows."""
        lab = self.label
        sky = self._sky
        for c in range(COLS):
            sky[c] = 255
            for r in range(ROWS):
                if lab[r * COLS + c] == b:
                    sky[c] = r
                    break
        heads = 0
        best = 255          # highest point (smallest row) of the current summit
        valley = 0          # deepest point since that summit
        for c in range(COLS):
            s = sky[c]
            if s == 255:
                if best != 255:
                    heads += 1
                best = 255
                valley = 0
                continue
            if best == 255:
                best, valley = s, s
                continue
            if s > valley:
                valley = s
            if s < best and valley - max(best, s) >= 3:
                heads += 1          # a new summit after a deep valley: the previous one was a head
                best, valley = s, s
            elif s < best:
                best = s
                valley = s
        if best != 255:
            heads += 1
        return heads

    # -- hot spot and size ------------------------------------------------------------------
    def _face(self, frame, b, ambient_c):
        """(hot_c, width_px) of blob b's upper part, or (None, 0)."""
        lab = self.label
        top = self._blob_top[b]
        # Pass 1: head width per row (sub-pixel edges) and the depth of the face ROI in rows.
        rows = self._min_rows
        first_w = 0.0
        width = 0.0
        for r in range(top, ROWS):
            if r - top >= rows:
                break
            base = r * COLS
            n = 0
            lo_c = COLS
            hi_c = -1
            for c in range(COLS):
                if lab[base + c] == b:
                    n += 1
                    if c < lo_c:
                        lo_c = c
                    hi_c = c
            if n == 0:
                continue
            w = float(n)
            if lo_c > 0:
                w += _frac(frame[base + lo_c - 1], frame[base + lo_c], ambient_c)
            if hi_c < COLS - 1:
                w += _frac(frame[base + hi_c + 1], frame[base + hi_c], ambient_c)
            if w > width:
                width = w
                # the ROI depth follows the distance implied by the widest row so far (the head
                # widens downwards to just below the eyes); never shallower than at the farthest
                # usable distance
                rows = int(FACE_DEPTH_M / (self._distance(width) * self._m_row) + 0.5)
                if rows < self._min_rows:
                    rows = self._min_rows
            if r - top < 3 and w > first_w:
                first_w = w
        # Pass 2: the hottest pixels of the ROI. Edge pixels mix face and background; when the head
        # is wide enough only pixels whose 4 neighbours are all body count (otherwise, with air
        # warmer than skin, a blurred edge would be the "hottest" face pixel).
        interior_only = first_w >= INTERIOR_MIN_PX
        top_vals = self._top
        k = self.hot_pixels
        for j in range(k):
            top_vals[j] = -1e9
        for r in range(top, min(top + rows, ROWS)):
            base = r * COLS
            for c in range(COLS):
                i = base + c
                if lab[i] != b:
                    continue
                if interior_only and not (0 < c < COLS - 1 and 0 < r < ROWS - 1 and lab[i - 1] == b
                                          and lab[i + 1] == b and lab[i - COLS] == b
                                          and lab[i + COLS] == b):
                    continue
                v = frame[i]
                if v > top_vals[k - 1]:
                    j = k - 1
                    while j > 0 and top_vals[j - 1] < v:
                        top_vals[j] = top_vals[j - 1]
                        j -= 1
                    top_vals[j] = v
        s = 0.0
        m = 0
        for j in range(k):
            if top_vals[j] > -1e8:
                s += top_vals[j]
                m += 1
        if m == 0:
            return None, 0.0
        return s / m, width

    def _distance(self, width_px):
        """Distance from the head's width in pixels; the PSF widens every blob by WIDTH_BLUR_PX."""
        w = width_px - WIDTH_BLUR_PX
        if w < 0.5:
            w = 0.5
        return HEAD_WIDTH_M / (w * self._m_col)

    # -- main entry -------------------------------------------------------------------------
    def update(self, frame, ambient_c, ta_c, t_ms):
        """Analyse one frame; returns the (reused) Reading."""
        rd = self.reading
        rd.clear(t_ms)
        rd.ambient_c = ambient_c
        warm = self.warmup.update(ta_c, t_ms)
        why = frame_problem(frame)
        if why is None and (ambient_c is None or ambient_c != ambient_c
                            or ambient_c < -40.0 or ambient_c > 60.0):
            why = "ambient"
        if why is not None:
            rd.reason = why
            self.stab.clear()
            self.dist.clear()
            return rd
        self._mark(frame, ambient_c)
        nb = self._label()
        best = 0
        best_n = 0
        people = 0
        for b in range(1, nb + 1):
            n = self._blob_n[b]
            if n < MIN_BLOB_PX:
                continue
            people += self._heads(b)
            if n > best_n:
                best, best_n = b, n
        rd.people = people
        self._update_background(frame)
        if not warm:
            rd.reason = "warming"
            return rd
        if best == 0:
            rd.reason = "no_person"
            self.stab.clear()
            self.dist.clear()
            return rd
        hot, width = self._face(frame, best, ambient_c)
        if hot is None or hot < FACE_MIN_C or hot > BODY_MAX_C or width < 1.0:
            rd.reason = "no_face"
            self.stab.clear()
            self.dist.clear()
            return rd
        dist = self._distance(width)
        rd.width_px = width
        if 100.0 * pixel_footprint_m(dist, self.fov_deg) > MAX_FOOTPRINT_CM:
            rd.reason = "too_far"
            rd.distance_m = dist
            self.stab.clear()
            self.dist.clear()
            return rd
        rd.hot_c = hot
        self.dist.push(dist)
        rd.distance_m = self.dist.mean()
        self.stab.push(hot)
        hot_mean = self.stab.mean()
        rd.stable = self.stab.stable()
        rd.skin_c = sharp_equivalent(hot_mean, ambient_c, rd.distance_m, self.fov_deg)
        rd.core_c, rd.in_range = core_estimate(rd.skin_c, ambient_c, rd.distance_m)
        rd.uncertainty_c = uncertainty_c(ambient_c, rd.distance_m, self.fov_deg)
        rd.valid = True
        return rd


def _frac(v, inner, ambient_c):
    """Fraction of a pixel covered by the body, from its temperature between air and the inner pixel."""
    span = inner - ambient_c
    if span < 0.5 and span > -0.5:
        return 0.0
    f = (v - ambient_c) / span
    if f < 0.0:
        return 0.0
    if f > 1.0:
        return 1.0
    return f
