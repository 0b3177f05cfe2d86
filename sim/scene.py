"""Thermal scenes for the kiosk simulator: people with a known core temperature in front of an MLX90640.

`render(scene, frame_index)` returns the 768 object temperatures (degC, index = row*32 + col, row 0 at
the top) that the register-level emulator turns into raw words, and the ground truth for that frame.
Everything is deterministic for a given `Scene.seed` and frame index.

Physiology (where each relation comes from)
-------------------------------------------
* "Core" in this simulator means what the clinical reference thermometer reads: oral temperature in
  monitor mode, the reference of the calibration data (PhysioNet face-oral-temp, Wang et al., Sensors
  2022, 22(1):215). Fever thresholds are defined against that reading, so that is what we simulate.
* Each facial site is a steady-state two-node heat balance (core node -> skin node -> environment), the
  same structure as Gagge's two-node model (Gagge, Stolwijk, Nishi 1971) and the steady Pennes (1948)
  bioheat equation collapsed to one conductance:
      K_site * (T_core - T_skin) = h_c * (T_skin - T_air) + h_r * (T_skin - T_mrt) + E_site
  solved for T_skin (h_c depends weakly on T_skin, so it is iterated three times).
  - h_c, convection: ISO 7730:2005 (Fanger), h_c = max(2.38 |T_skin - T_air|^0.25, 12.1 sqrt(v_air)).
  - h_r, radiation: linearised Stefan-Boltzmann, h_r = 4 eps sigma T_mean^3, skin eps = 0.98.
  - K_site, tissue conductance: the inner canthus is fed by the ophthalmic branch of the internal carotid
    (why IEC 80601-2-59 / ISO/TR 13154 make it the reference site); the forehead and scalp do not
    vasoconstrict in the cold (Froese & Burton 1957, J Appl Physiol 10:235: head heat loss rises linearly
    as air falls from +32 to -21 degC). So K is constant for canthus and forehead. Cheeks and nose do
    vasoconstrict (the nose is the coldest spot of a cold face), modelled as K falling linearly below
    the thermoneutral 28 degC. The thermoneutral K values are set so that at 22 degC in still air the
    mean site offsets (core - site) equal those of the calibration data: face maximum (= canthus here)
    about 1.0 degC, forehead maximum about 1.7 degC (values from tools/calibrate_core.py --anchors).
  - E_site, sweating: forehead sweat starts near 29-30 degC air in resting people (regional sweat maps:
    Taylor & Machado-Moreira 2013, Extreme Physiol Med 2:4, forehead among the highest rates). The rate
    per degree used here is an assumption, not fitted to data: it keeps the forehead a little below the
    canthus at 40 degC air.
  - Person-to-person spread: K_site log-normal (SD 15 %) plus an additive site offset (SD 0.15 degC); at
    22 degC this gives an offset SD near the calibration data's residual SD for the face maximum with a
    constant offset (about 0.26 degC, which also contains the oral thermometer's own noise).
  - Coming in from elsewhere: skin relaxes towards the new steady state with a time constant of about
    8 minutes (facial skin cooling/rewarming, order of magnitude from IEC 80601-2-59 advice to wait
    ~10 min before screening people who arrive from a different climate). Modelled as an effective air
    temperature that decays exponentially from `came_from_c` to the local air.
* Emissivity: skin 0.98 (Steketee 1973). Frames are object temperatures as a driver configured with
  emissivity 0.98 and reflected temperature = air reports them, so skin reads its true temperature
  (`apparent_c` converts to what an emissivity-1 driver would show). Glass is opaque in 8-14 um:
  spectacles show their own temperature, which hides the inner canthi.
* Hair, hats, masks and clothing are insulating layers: their surface sits between skin (or core) and
  air, T = T_air + f * (T_under - T_air), f from clothing-insulation practice (ISO 9920 order of
  magnitude; values here are assumptions, documented per layer below).

Sensor and optics
-----------------
* MLX90640 field of view 55 x 35 deg (BAB) or 110 x 75 deg (BAA), 32 x 24 pixels (Melexis datasheet).
  Each pixel integrates its angular cell (supersampled 6 x 6) and the optics spread light to the
  neighbours (Gaussian, sigma 0.4 px: the datasheet's pixel field-of-view plots overlap neighbours).
* Noise: NETD 0.1 K rms at 1 Hz refresh, growing with the square root of the refresh rate (datasheet
  noise vs refresh-rate figure; doubling the rate doubles bandwidth).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ROWS, COLS = 24, 32
SIGMA_SB = 5.670374419e-8  # Stefan-Boltzmann constant, W m^-2 K^-4
EPS_SKIN = 0.98
VFOV_FOR_HFOV = {55.0: 35.0, 110.0: 75.0}  # MLX90640 BAB / BAA
SUPERSAMPLE = 6
PSF_SIGMA_PX = 0.4

# Thermoneutral tissue conductance per site, W m^-2 K^-1 (see module docstring for the anchors).
K_SITE = {"canthus": 139.0, "periorbital": 100.0, "forehead": 73.0, "cheek": 60.0, "nose": 45.0,
          "neck": 80.0, "mouth": 70.0}
# Fractional loss of K per degC below 28 degC air (vasoconstriction); 0 where the head does not constrict.
VASO_PER_C = {"canthus": 0.0, "periorbital": 0.0, "forehead": 0.0, "cheek": 0.012, "nose": 0.025,
              "neck": 0.0, "mouth": 0.008}
# Sweat heat loss per degC of air above 29 degC, W m^-2 (assumed, see docstring).
SWEAT_PER_C = {"canthus": 1.5, "periorbital": 3.0, "forehead": 8.0, "cheek": 5.0, "nose": 4.0,
               "neck": 6.0, "mouth": 4.0}
THERMONEUTRAL_C = 28.0
SWEAT_ONSET_C = 29.0
ACCLIMATION_TAU_MIN = 8.0


def convective_h(skin_c: float, air_c: float, wind_m_s: float) -> float:
    """ISO 7730 convective coefficient: free convection or forced, whichever is larger."""
    return max(2.38 * abs(skin_c - air_c) ** 0.25, 12.1 * math.sqrt(max(wind_m_s, 0.0)))


def radiative_h(skin_c: float, mrt_c: float) -> float:
    """Linearised radiative exchange coefficient 4 eps sigma T_mean^3."""
    t_mean = (skin_c + mrt_c) / 2.0 + 273.15
    return 4.0 * EPS_SKIN * SIGMA_SB * t_mean ** 3


def site_temperature(site: str, core_c: float, air_c: float, wind_m_s: float = 0.0, *,
                     mrt_c: float | None = None, k_scale: float = 1.0, offset_c: float = 0.0) -> float:
    """Steady-state skin temperature of one facial site (two-node heat balance, see module docstring)."""
    mrt = air_c if mrt_c is None else mrt_c
    k = K_SITE[site] * k_scale * max(0.3, 1.0 - VASO_PER_C[site] * max(0.0, THERMONEUTRAL_C - air_c))
    sweat = SWEAT_PER_C[site] * max(0.0, air_c - SWEAT_ONSET_C)
    skin = core_c - 2.0
    for _ in range(3):
        hc = convective_h(skin, air_c, wind_m_s)
        hr = radiative_h(skin, mrt)
        skin = (k * core_c + hc * air_c + hr * mrt - sweat) / (k + hc + hr)
    return skin - offset_c


def apparent_c(true_c: np.ndarray | float, reflected_c: float, emissivity: float = EPS_SKIN):
    """Object temperature a sensor assuming emissivity 1 reports for a grey body (8-14 um, T^4 approx)."""
    t = np.asarray(true_c, dtype=float) + 273.15
    tr = reflected_c + 273.15
    return (emissivity * t ** 4 + (1.0 - emissivity) * tr ** 4) ** 0.25 - 273.15


@dataclass
class Person:
    """One person. Positions are metres: `x_m` to the right of the sensor axis, `y_m` up, at `distance_m`."""
    core_c: float
    distance_m: float = 0.6
    x_m: float = 0.0
    y_m: float = 0.0          # height of the eyes relative to the sensor axis
    hat: bool = False
    glasses: bool = False
    mask: bool = False
    long_hair: bool = False
    came_from_c: float | None = None   # air temperature the person was in before (None: acclimatised)
    minutes_here: float = 30.0
    k_scale: float = 1.0               # individual tissue conductance factor
    offset_c: float = 0.0              # individual additive site offset
    sway_m: float = 0.003              # frame-to-frame head sway (standing still)


@dataclass
class Scene:
    air_c: float = 22.0
    wind_m_s: float = 0.0
    people: list[Person] = field(default_factory=list)
    fov_deg: float = 55.0
    refresh_hz: float = 8.0
    netd_1hz: float = 0.1
    background: str = "wall"        # "wall", "sunny_wall", "engine", "sky"
    seed: int = 0


def random_person(rng: np.random.Generator, core_c: float, **kw) -> Person:
    """A person with individual physiology drawn from the spreads in the module docstring."""
    p = Person(core_c=core_c, **kw)
    p.k_scale = float(np.exp(rng.normal(0.0, 0.15)))
    p.offset_c = float(rng.normal(0.0, 0.15))
    if "y_m" not in kw:
        p.y_m = float(rng.normal(0.0, 0.06))
    return p


def random_scene(seed: int, core_c: float, air_c: float, distance_m: float, fov_deg: float = 55.0, *,
                 accessories: bool = False, wind_m_s: float = 0.0, background: str = "wall",
                 refresh_hz: float = 8.0) -> Scene:
    """One person standing still in a lane, with individual physiology (and, optionally, hats,
    glasses, masks and long hair at everyday rates: assumed 20 %, 15 %, 20 %, 25 %)."""
    rng = np.random.default_rng([seed, 7919])
    kw = {}
    if accessories:
        kw = {"hat": bool(rng.random() < 0.2), "glasses": bool(rng.random() < 0.15),
              "mask": bool(rng.random() < 0.2), "long_hair": bool(rng.random() < 0.25)}
    p = random_person(rng, core_c, distance_m=distance_m, x_m=float(rng.normal(0.0, 0.03)), **kw)
    return Scene(air_c=air_c, wind_m_s=wind_m_s, people=[p], fov_deg=fov_deg, refresh_hz=refresh_hz,
                 background=background, seed=seed)


def face_temperatures(p: Person, air_c: float, wind_m_s: float) -> dict[str, float]:
    """True (not apparent) surface temperatures of every face region of one person."""
    eff_air = air_c
    if p.came_from_c is not None:
        eff_air = air_c + (p.came_from_c - air_c) * math.exp(-p.minutes_here / ACCLIMATION_TAU_MIN)
    t = {s: site_temperature(s, p.core_c, eff_air, wind_m_s, k_scale=p.k_scale, offset_c=p.offset_c)
         for s in K_SITE}
    # Insulating layers (assumed fractions): hair 0.45 of skin-air, woollen hat 0.2, surgical mask 0.75
    # (breath keeps it warm), clothing over the torso 0.3 of core-air, spectacle glass 0.55.
    t["hair"] = air_c + 0.45 * (t["forehead"] - air_c)
    t["hat"] = air_c + 0.2 * (t["forehead"] - air_c)
    t["mask"] = air_c + 0.75 * (t["mouth"] - air_c)
    t["clothes"] = air_c + 0.3 * (p.core_c - air_c)
    t["glass"] = air_c + 0.55 * (t["periorbital"] - air_c)
    return t


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _paint_person(img: np.ndarray, x: np.ndarray, y: np.ndarray, p: Person, t: dict[str, float],
                  dx: float, dy: float) -> None:
    """Paint one person onto the supersampled plane coordinates (metres at the person's distance)."""
    x = x - (p.x_m + dx)
    y = y - (p.y_m + dy)
    ax = np.abs(x)
    torso = (ax < 0.22) & (y < -0.17)
    img[torso] = t["clothes"]
    neck = (ax < 0.055) & (y < -0.08) & (y >= -0.17)
    img[neck] = t["neck"]
    head = _ellipse(x, y, 0.0, 0.02, 0.075, 0.115)
    img[head] = t["cheek"]
    img[head & (y > -0.07) & (y < -0.045) & (ax < 0.025)] = t["mouth"]
    img[head & (y > 0.015)] = t["forehead"]
    img[_ellipse(ax, y, 0.032, 0.0, 0.016, 0.009)] = t["periorbital"]
    img[(ax < 0.011) & (y < -0.005) & (y > -0.05)] = t["nose"]
    canthi = _ellipse(ax, y, 0.016, 0.0, 0.0045, 0.0045)
    img[canthi] = t["canthus"]
    hairline = 0.085 if not p.long_hair else 0.07
    img[head & (y > hairline)] = t["hair"]
    if p.long_hair:
        img[(ax > 0.062) & (ax < 0.095) & (y < 0.08) & (y > -0.2)] = t["hair"]
    if p.hat:
        img[_ellipse(x, y, 0.0, 0.09, 0.09, 0.07) & (y > 0.045)] = t["hat"]
    if p.mask:
        img[head & (y < -0.02) & (y > -0.1) & (ax < 0.07)] = t["mask"]
    if p.glasses:
        lens = (np.abs(ax - 0.033) < 0.026) & (np.abs(y) < 0.017)
        img[lens] = t["glass"]


def _background(scene: Scene, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Background temperature per supersample; u, v are tan(angle) right and up."""
    a = scene.air_c
    img = np.full(u.shape, a, dtype=float) + 0.4 * v  # slight vertical gradient (warm air near ceiling)
    if scene.background == "sunny_wall":
        img[u > 0.05] = a + 18.0                       # sun-heated wall behind, right side
    elif scene.background == "engine":
        img[(v < -0.15) & (u < -0.05)] = 75.0          # warm car bonnet, lower left
        img[(v < -0.15) & (u < -0.05) & (v > -0.2)] = 90.0
    elif scene.background == "sky":
        img[v > 0.1] = a - 25.0                        # clear sky above the horizon outdoors
    return img


def _pixel_grid(fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """tan(angle) of each supersample: shape (ROWS*S, COLS*S), v positive up (row 0 at the top)."""
    vfov = VFOV_FOR_HFOV.get(float(fov_deg), fov_deg * 24.0 / 32.0)
    s = SUPERSAMPLE
    ax = (np.arange(COLS * s) + 0.5) / (COLS * s) - 0.5
    ay = 0.5 - (np.arange(ROWS * s) + 0.5) / (ROWS * s)
    u = np.tan(np.radians(ax * fov_deg))
    v = np.tan(np.radians(ay * vfov))
    return np.meshgrid(u, v)


def _blur(img: np.ndarray) -> np.ndarray:
    k = np.exp(-0.5 * (np.arange(-2, 3) / PSF_SIGMA_PX) ** 2)
    k /= k.sum()
    pad = np.pad(img, 2, mode="edge")
    rows = sum(k[i] * pad[:, i:i + COLS] for i in range(5))
    return sum(k[i] * rows[i:i + ROWS, :] for i in range(5))


def noise_sigma(scene: Scene) -> float:
    """Per-pixel temporal noise, K rms: NETD at 1 Hz times sqrt(refresh rate)."""
    return scene.netd_1hz * math.sqrt(max(scene.refresh_hz, 0.5))


def render(scene: Scene, frame_index: int = 0, *, noise: bool = True) -> tuple[list[float], dict]:
    """Return (768 object temperatures degC, ground truth) for one frame of `scene`."""
    rng = np.random.default_rng([scene.seed, frame_index])
    u, v = _pixel_grid(scene.fov_deg)
    hi = _background(scene, u, v)
    truth_people = []
    # Far to near, so the nearer person hides the one behind.
    for p in sorted(scene.people, key=lambda q: -q.distance_m):
        t = face_temperatures(p, scene.air_c, scene.wind_m_s)
        dx, dy = rng.normal(0.0, p.sway_m, 2)
        _paint_person(hi, u * p.distance_m, v * p.distance_m, p, t, dx, dy)
        sharp_max = max(t["canthus"], t["forehead"]) if not p.glasses else max(t["forehead"], t["cheek"])
        truth_people.append({
            "core_c": p.core_c, "distance_m": p.distance_m, "x_m": p.x_m, "y_m": p.y_m,
            "canthus_c": t["canthus"], "forehead_c": t["forehead"],
            "face_max_c": sharp_max,  # what a sharp camera's face maximum would read
            "canthus_visible": not p.glasses, "hat": p.hat, "glasses": p.glasses, "mask": p.mask,
        })
    # The frame holds object temperatures as a driver set to emissivity 0.98 and reflected temperature =
    # air reports them (the kiosk's setting): for skin that is the true surface temperature. `apparent_c`
    # gives what an emissivity-1 driver would report instead.
    s = SUPERSAMPLE
    px = hi.reshape(ROWS, s, COLS, s).mean(axis=(1, 3))
    px = _blur(px)
    if noise:
        px = px + rng.normal(0.0, noise_sigma(scene), px.shape)
    truth = {"air_c": scene.air_c, "wind_m_s": scene.wind_m_s, "n_people": len(scene.people),
             "people": sorted(truth_people, key=lambda d: d["distance_m"]), "fov_deg": scene.fov_deg,
             "refresh_hz": scene.refresh_hz, "noise_k": noise_sigma(scene) if noise else 0.0}
    return [float(x) for x in px.ravel()], truth


def sequence(scene: Scene, n_frames: int, start: int = 0):
    """Yield (frame_index, frame, truth) for consecutive frames of a still scene."""
    for i in range(start, start + n_frames):
        frame, truth = render(scene, i)
        yield i, frame, truth
