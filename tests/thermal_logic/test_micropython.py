"""The firmware modules are MicroPython: they compile with mpy-cross and, under the real unix port,
make the same decisions as under CPython on rendered frames."""
import json
from array import array


from kiosk import screening, thermal
from sim import scene
from tests.micropython_runner import run_micropython

MODULES = ["kiosk/thermal.py", "kiosk/screening.py"]

CASES = [  # (core, air, distance, fov, background)
    (38.5, 20.0, 0.6, 55.0, "wall"),
    (36.6, -10.0, 0.6, 55.0, "wall"),
    (36.9, 22.0, 0.8, 55.0, "sunny_wall"),
    (37.2, 30.0, 0.5, 110.0, "wall"),
]

SCRIPT = """
import json
from array import array
from kiosk import thermal, screening
with open(%r) as fh:
    cases = json.load(fh)
out = []
for c in cases:
    an = thermal.Analyzer(fov_deg=c["fov"], warmup_ms=0)
    s = screening.Screener()
    res = None
    t = 0
    for f in c["empty"]:
        an.update(array("f", f), c["air"], 30.0, t)
        t += 125
    for f in c["frames"]:
        rd = an.update(array("f", f), c["air"], 30.0, t)
        r = s.frame(rd, t)
        if r is not None:
            res = [r, s.last["core_c"], s.last["elapsed_ms"]]
            break
        t += 125
    bad = array("f", c["frames"][0])
    bad[5] = float("nan")
    out.append([res, an.update(bad, c["air"], 30.0, t + 125).reason])
print(json.dumps(out))
"""


def _cases():
    cases = []
    for k, (core, air, dist, fov, bg) in enumerate(CASES):
        sc = scene.random_scene(100 + k, core, air, dist, fov, background=bg)
        empty = scene.Scene(air_c=air, fov_deg=fov, seed=sc.seed, background=bg)
        cases.append({"air": air, "fov": fov,
                      "empty": [[round(v, 3) for v in scene.render(empty, 10_000 + i)[0]] for i in range(3)],
                      "frames": [[round(v, 3) for v in scene.render(sc, i)[0]] for i in range(12)]})
    return cases


def _cpython(cases):
    out = []
    for c in cases:
        an = thermal.Analyzer(fov_deg=c["fov"], warmup_ms=0)
        s = screening.Screener()
        res = None
        t = 0
        for f in c["empty"]:
            an.update(array("f", f), c["air"], 30.0, t)
            t += 125
        for f in c["frames"]:
            rd = an.update(array("f", f), c["air"], 30.0, t)
            r = s.frame(rd, t)
            if r is not None:
                res = [r, s.last["core_c"], s.last["elapsed_ms"]]
                break
            t += 125
        bad = array("f", c["frames"][0])
        bad[5] = float("nan")
        out.append([res, an.update(bad, c["air"], 30.0, t + 125).reason])
    return out


def test_same_decisions_under_micropython_and_cpython(tmp_path):
    cases = _cases()
    path = tmp_path / "cases.json"        # too big for a command line: the script reads it
    path.write_text(json.dumps(cases))
    mp = json.loads(run_micropython(SCRIPT % str(path)).strip().splitlines()[-1])
    cp = _cpython(cases)
    assert len(mp) == len(cp) == len(CASES)
    for m, c in zip(mp, cp):
        assert m[1] == c[1] == "nan"
        assert c[0] is not None and m[0][0] == c[0][0] and m[0][2] == c[0][2]
        assert abs(m[0][1] - c[0][1]) <= 0.02          # float32 vs float64 arithmetic
    assert cp[0][0][0] == "fever"
