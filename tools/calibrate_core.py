"""Fit the core-temperature model of firmware/kiosk/thermal.py and print the figures.

Data:
* facial thermography vs oral temperature, PhysioNet face-oral-temp v1.0.0 group 1 (FLIR, ICI),
  Wang et al., Sensors 2022, 22(1):215 - `data/face-oral-temp/` (a copy of ../shared/data);
* the simulator's ground truth (sim/scene.py) across air -10..40 degC.

Steps (each prints what it found; the coefficients are then copied into thermal.py by hand):
  --anchors   mean site offsets (oral - site) of the facial data, used to set sim/scene.py's K_SITE
  --shape     C1..C3: core - face maximum vs (skin - air) on the simulator's physiology
  --level     C0 on the facial data (oral, monitor mode), with the shape fixed; 10-fold CV RMSE
  --optics    HEAD_WIDTH_M, WIDTH_BLUR_PX, S0, S1: the 32x24 sensor vs a sharp camera, on rendered frames
With no option, all steps run.

Usage: python tools/calibrate_core.py [--anchors] [--shape] [--level] [--optics] [--n N]
"""
from __future__ import annotations

import argparse
import csv
import sys
from array import array
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "face-oral-temp"
for p in (ROOT / "firmware", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from kiosk import thermal  # noqa: E402
from sim import scene  # noqa: E402

CAMERAS = ("FLIR", "ICI")


def load_facial(camera: str, data_dir: Path = DATA) -> dict[str, np.ndarray]:
    """One camera's group-1 table as float arrays; subjects missing a needed value are dropped.

    Site temperatures are the mean over the 4 rounds that are present (the protocol's own average).
    """
    path = Path(data_dir) / f"{camera}_group1.csv"
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[2]
    col = {name: i for i, name in enumerate(header) if name}

    def column(name: str) -> np.ndarray:
        i = col[name]
        out = np.full(len(rows) - 3, np.nan)
        for k, r in enumerate(rows[3:]):
            try:
                out[k] = float(r[i])
            except (IndexError, ValueError):
                pass
        return out

    def rounds(stem: str) -> np.ndarray:
        with np.errstate(all="ignore"):
            stack = np.vstack([column(f"{stem}{n}") for n in range(1, 5)])
            return np.nanmean(stack, axis=0) if np.any(~np.isnan(stack)) else stack[0]

    d = {"face_max": rounds("T_Max"), "canthi": rounds("canthiMax"), "forehead": rounds("T_FH_Max"),
         "oral": column("aveOralM"), "oral_fast": column("aveOralF"), "air": column("T_atm"),
         "distance": column("Distance")}
    keep = np.ones(len(d["oral"]), dtype=bool)
    for k in ("face_max", "canthi", "oral", "air", "distance"):
        keep &= np.isfinite(d[k])
    return {k: v[keep] for k, v in d.items()}


def load_all(data_dir: Path = DATA) -> dict[str, np.ndarray]:
    parts = [load_facial(c, data_dir) for c in CAMERAS]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["camera"] = np.concatenate([np.full(len(p["oral"]), i) for i, p in enumerate(parts)])
    return out


def shape_features(skin: np.ndarray, air: np.ndarray) -> np.ndarray:
    """Columns multiplying C1, C2, C3 in thermal.core_estimate (offset depends on air only)."""
    d = thermal.T_REF_C - np.asarray(air, dtype=float) + 0.0 * np.asarray(skin, dtype=float)
    return np.c_[d, d * d, np.maximum(0.0, air - 29.0)]


def model_core(skin, air, dist, coef=None) -> np.ndarray:
    """thermal.core_estimate over arrays (coef = (C0, C1, C2, C3) or the firmware's)."""
    if coef is None:
        return np.array([thermal.core_estimate(float(s), float(a), float(m))[0]
                         for s, a, m in zip(skin, air, dist)])
    c0, c1, c2, c3 = coef
    return skin + c0 + shape_features(skin, air) @ np.array([c1, c2, c3])


def folds(n: int, k: int = 10, seed: int = 0) -> list[np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    return [idx[i::k] for i in range(k)]


def cv_predict(fit, predict, data: dict, k: int = 10, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions: fit(train_dict) -> params, predict(params, test_dict) -> array."""
    n = len(data["oral"])
    pred = np.empty(n)
    for test in folds(n, k, seed):
        train = np.setdiff1d(np.arange(n), test)
        params = fit({key: v[train] for key, v in data.items()})
        pred[test] = predict(params, {key: v[test] for key, v in data.items()})
    return pred


def fit_offset(feature: str):
    """Constant-offset baseline on one facial feature (the published best for fever detection)."""
    def fit(tr):
        return float(np.mean(tr["oral"] - tr[feature]))

    def predict(off, te):
        return te[feature] + off
    return fit, predict


def fit_level(shape=None):
    """The firmware model with its shape fixed, level C0 fitted on the training fold."""
    c1, c2, c3 = shape if shape is not None else (thermal.C1, thermal.C2, thermal.C3)

    def fit(tr):
        base = model_core(tr["face_max"], tr["air"], tr["distance"], (0.0, c1, c2, c3))
        return float(np.mean(tr["oral"] - base))

    def predict(c0, te):
        return model_core(te["face_max"], te["air"], te["distance"], (c0, c1, c2, c3))
    return fit, predict


def fit_free_linear():
    """Ordinary least squares oral ~ face_max + air + distance (for comparison, not used)."""
    def design(d):
        return np.c_[np.ones(len(d["oral"])), d["face_max"], d["air"], d["distance"]]

    def fit(tr):
        return np.linalg.lstsq(design(tr), tr["oral"], rcond=None)[0]

    def predict(b, te):
        return design(te) @ b
    return fit, predict


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def sens_spec(pred, truth, threshold: float, pred_threshold: float | None = None) -> tuple[float, float]:
    pt = threshold if pred_threshold is None else pred_threshold
    pos = truth >= threshold
    flag = pred >= pt
    sens = float(np.mean(flag[pos])) if pos.any() else float("nan")
    spec = float(np.mean(~flag[~pos])) if (~pos).any() else float("nan")
    return sens, spec


def bootstrap(stat, *arrays, n: int = 1000, seed: int = 1) -> tuple[float, float]:
    """95 % percentile interval of stat(*arrays) over subject resamples."""
    rng = np.random.default_rng(seed)
    m = len(arrays[0])
    vals = []
    for _ in range(n):
        i = rng.integers(0, m, m)
        vals.append(stat(*(a[i] for a in arrays)))
    return float(np.nanpercentile(vals, 2.5)), float(np.nanpercentile(vals, 97.5))


# ---------------------------------------------------------------------------------------------
def step_anchors() -> None:
    d = load_all()
    print("== anchors: mean oral (monitor) - site, facial data, both cameras ==")
    for k in ("face_max", "canthi", "forehead"):
        ok = np.isfinite(d[k])
        print(f"  {k:9s} offset {np.mean(d['oral'][ok] - d[k][ok]):.3f}  SD {np.std(d['oral'][ok] - d[k][ok]):.3f}")
    print(f"  air {d['air'].min():.1f}..{d['air'].max():.1f} degC (mean {d['air'].mean():.1f}),"
          f" distance {d['distance'].min():.2f}..{d['distance'].max():.2f} m")
    for site in ("canthus", "forehead"):
        t = scene.site_temperature(site, 37.0, float(d["air"].mean()))
        print(f"  sim {site:9s} offset at mean air, still: {37.0 - t:.3f}")


def sim_physiology(n: int, seed: int = 3, wind_max: float = 0.0) -> dict[str, np.ndarray]:
    """Sharp face maximum of n simulated people across air -10..40 degC (no optics)."""
    rng = np.random.default_rng(seed)
    core = rng.normal(37.0, 0.7, n)
    air = rng.uniform(-10.0, 40.0, n)
    wind = rng.uniform(0.0, wind_max, n) if wind_max else np.zeros(n)
    skin = np.empty(n)
    for i in range(n):
        p = scene.random_person(rng, float(core[i]))
        t = scene.face_temperatures(p, float(air[i]), float(wind[i]))
        skin[i] = max(t["canthus"], t["forehead"])
    return {"core": core, "air": air, "skin": skin, "wind": wind}


def step_shape(n: int) -> tuple[float, float, float]:
    s = sim_physiology(n)
    X = np.c_[np.ones(n), shape_features(s["skin"], s["air"])]
    b = np.linalg.lstsq(X, s["core"] - s["skin"], rcond=None)[0]
    res = s["core"] - s["skin"] - X @ b
    print("== shape: core - face max on simulated physiology, air -10..40, still air ==")
    print(f"  fit C0(sim) {b[0]:+.4f}  C1 {b[1]:+.5f}  C2 {b[2]:+.6f}  C3 {b[3]:+.5f}  residual SD {res.std():.3f}")
    for lo in range(-10, 40, 10):
        m = (s["air"] >= lo) & (s["air"] < lo + 10)
        print(f"   air {lo:+3d}..{lo + 10:+3d}: MAE {np.mean(np.abs(res[m])):.3f}  (person-to-person spread)")
    cur = model_core(s["skin"], s["air"], s["air"] * 0 + 0.7)
    print(f"  firmware coefficients now: MAE on this set {np.mean(np.abs(cur - s['core'])):.3f}")
    return float(b[1]), float(b[2]), float(b[3])


def step_level(shape=None) -> float:
    d = load_all()
    f, p = fit_level(shape)
    c0 = f(d)
    print("== level: C0 on the facial data (oral monitor mode, both cameras, shape fixed) ==")
    print(f"  C0 {c0:+.4f}")
    for name, (fit, pred) in {"model (shape fixed, C0 per fold)": fit_level(shape),
                              "baseline offset on face max": fit_offset("face_max"),
                              "baseline offset on canthi max": fit_offset("canthi"),
                              "free linear face max+air+dist": fit_free_linear()}.items():
        cv = cv_predict(fit, pred, d)
        lo, hi = bootstrap(rmse, cv, d["oral"])
        se, sp = sens_spec(cv, d["oral"], 37.5)
        print(f"  {name:34s} CV RMSE {rmse(cv, d['oral']):.3f} [{lo:.3f}, {hi:.3f}]  sens/spec@37.5 {se:.2f}/{sp:.2f}")
    return c0


def render_set(n: int, seed: int = 11, fovs=(55.0, 110.0), frames: int = 4) -> list[dict]:
    """Rendered people (one per scene) through the firmware Analyzer: hot spot, width, truth."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        fov = fovs[k % len(fovs)]
        air = float(rng.uniform(-10.0, 40.0))
        dist = float(rng.uniform(0.3, 1.5))
        core = float(rng.normal(37.0, 0.6))
        sc = scene.random_scene(seed * 100000 + k, core, air, dist, fov)
        an = thermal.Analyzer(fov_deg=fov, warmup_ms=0, stable_frames=frames)
        empty = scene.Scene(air_c=air, fov_deg=fov, seed=sc.seed)
        for i in range(2):
            an.update(array("f", scene.render(empty, 1000 + i)[0]), air, 30.0, i * 125)
        rd = None
        for i in range(frames):
            frame, truth = scene.render(sc, i)
            rd = an.update(array("f", frame), air, 30.0, 500 + i * 125)
        if not rd.valid:
            continue
        out.append({"fov": fov, "air": air, "dist": dist, "core": core, "width": rd.width_px,
                    "hot": an.stab.mean(), "dist_est": rd.distance_m,
                    "face_max": truth["people"][0]["face_max_c"]})
    return out


def fit_head_width(rs: list[dict]) -> tuple[float, float]:
    """width_px = HEAD_WIDTH_M / (distance * m_per_col) + WIDTH_BLUR_PX, least squares."""
    fov = np.array([r["fov"] for r in rs])
    dist = np.array([r["dist"] for r in rs])
    width = np.array([r["width"] for r in rs])
    m_col = 2.0 * np.tan(np.radians(fov) / 2.0) / 32.0
    X = np.c_[1.0 / (dist * m_col), np.ones(len(rs))]
    (w_head, blur), *_ = np.linalg.lstsq(X, width, rcond=None)
    return float(w_head), float(blur)


def step_optics(n: int) -> None:
    print("== optics: 32x24 hot spot vs sharp face maximum, rendered (simulated) ==")
    for rnd in (1, 2):      # the fitted head width feeds the ROI depth and the too-far rule: iterate
        rs = render_set(n)
        w_head, blur = fit_head_width(rs)
        print(f"  round {rnd}: HEAD_WIDTH_M {w_head:.4f}  WIDTH_BLUR_PX {blur:.3f}   ({len(rs)} valid of {n})")
        thermal.HEAD_WIDTH_M, thermal.WIDTH_BLUR_PX = float(w_head), float(blur)
    fov = np.array([r["fov"] for r in rs])
    dist = np.array([r["dist"] for r in rs])
    width = np.array([r["width"] for r in rs])
    m_col = 2.0 * np.tan(np.radians(fov) / 2.0) / 32.0
    w_head, blur = thermal.HEAD_WIDTH_M, thermal.WIDTH_BLUR_PX
    d_est = np.array([float(w_head / (max(w - blur, 0.5) * mc)) for w, mc in zip(width, m_col)])
    for f in (55.0, 110.0):
        m = fov == f
        print(f"   fov {f:.0f}: distance MAE {np.mean(np.abs(d_est[m] - dist[m])):.3f} m,"
              f" rel {np.median(np.abs(d_est[m] / dist[m] - 1)):.3f}")
    hot = np.array([r["hot"] for r in rs])
    air = np.array([r["air"] for r in rs])
    fmax = np.array([r["face_max"] for r in rs])
    fp = 100.0 * 2.0 * d_est * np.tan(np.radians(fov) / 2.0) / 32.0
    fp_true = 100.0 * 2.0 * dist * np.tan(np.radians(fov) / 2.0) / 32.0
    ok = (fp <= thermal.MAX_FOOTPRINT_CM) & (fp_true <= thermal.MAX_FOOTPRINT_CM)
    x = thermal.T_REF_C - air
    A = np.c_[x, x * fp, np.ones(len(rs)), fp, fp * fp]
    coef, *_ = np.linalg.lstsq(A[ok], (fmax - hot)[ok], rcond=None)
    res = fmax - hot - A @ coef
    print("  " + "  ".join(f"S{i} {c:+.5f}" for i, c in enumerate(coef)) +
          f"   residual SD {res[ok].std():.3f}  ({ok.sum()} within MAX_FOOTPRINT_CM)")
    for f in (55.0, 110.0):
        for lo, hi in ((0.3, 0.6), (0.6, 0.9), (0.9, 1.2), (1.2, 1.5)):
            m = (fov == f) & (dist >= lo) & (dist < hi) & ok
            if m.any():
                print(f"   fov {f:.0f} {lo:.1f}-{hi:.1f} m: loss {np.mean(fmax[m] - hot[m]):+.3f}  after fit MAE"
                      f" {np.mean(np.abs(res[m])):.3f}  (n={m.sum()})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for s in ("anchors", "shape", "level", "optics"):
        ap.add_argument(f"--{s}", action="store_true")
    ap.add_argument("--n", type=int, default=400, help="simulated people per step")
    a = ap.parse_args(argv)
    every = not (a.anchors or a.shape or a.level or a.optics)
    print(f"firmware now: C0 {thermal.C0} C1 {thermal.C1} C2 {thermal.C2} C3 {thermal.C3}"
          f" S0 {thermal.S0} S1 {thermal.S1} HEAD_WIDTH_M {thermal.HEAD_WIDTH_M} WIDTH_BLUR_PX {thermal.WIDTH_BLUR_PX}")
    if every or a.anchors:
        step_anchors()
    shape = None
    if every or a.shape:
        shape = step_shape(max(a.n, 2000))
    if every or a.level:
        step_level(shape)
    if every or a.optics:
        step_optics(a.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
