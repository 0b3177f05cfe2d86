"""The simulator's scenes: determinism, physiology directions, optics and noise."""
from array import array

import numpy as np

from kiosk import thermal
from sim import scene


def test_deterministic_per_seed_and_shape():
    sc = scene.random_scene(5, 37.0, 10.0, 0.7, 55.0, accessories=True)
    a, ta = scene.render(sc, 3)
    b, tb = scene.render(sc, 3)
    assert a == b and ta == tb and len(a) == 768
    assert scene.render(sc, 4)[0] != a


def test_skin_falls_with_cold_and_wind_and_canthus_beats_forehead():
    temps = [scene.face_temperatures(scene.Person(37.0), air, 0.0) for air in (-10, 0, 10, 22)]
    assert all(a["canthus"] < b["canthus"] for a, b in zip(temps, temps[1:]))
    assert all(t["canthus"] > t["forehead"] for t in temps)
    windy = scene.face_temperatures(scene.Person(37.0), -10, 3.0)
    assert windy["forehead"] < temps[0]["forehead"] - 2.0
    assert 37.0 - temps[0]["canthus"] > 2.0           # January: skin far below core


def test_noise_grows_with_refresh_rate():
    def spread(hz):
        sc = scene.Scene(air_c=20.0, refresh_hz=hz, seed=1)
        return np.std(scene.render(sc, 0)[0])
    assert spread(32.0) > 1.8 * spread(4.0)


def test_nearer_face_covers_more_pixels_and_wide_lens_fewer():
    def warm_px(dist, fov):
        f, _ = scene.render(scene.Scene(people=[scene.Person(37.0, distance_m=dist)], fov_deg=fov), 0,
                            noise=False)
        return sum(v > 30.0 for v in f)
    assert warm_px(0.4, 55.0) > warm_px(1.2, 55.0) > 0
    assert warm_px(0.6, 110.0) < warm_px(0.6, 55.0)


def test_two_people_in_view_are_counted():
    p1 = scene.Person(37.0, distance_m=0.6, x_m=-0.16)
    p2 = scene.Person(36.8, distance_m=0.7, x_m=0.2, y_m=0.05)
    sc = scene.Scene(air_c=22.0, people=[p1, p2], seed=2)
    an = thermal.Analyzer(warmup_ms=0)
    an.update(array("f", scene.render(scene.Scene(air_c=22.0, seed=2), 0)[0]), 22.0, 30.0, 0)
    rd = an.update(array("f", scene.render(sc, 0)[0]), 22.0, 30.0, 125)
    assert rd.people == 2
    one = scene.Scene(air_c=22.0, people=[p1], seed=2)
    assert an.update(array("f", scene.render(one, 1)[0]), 22.0, 30.0, 250).people == 1


def test_glasses_hide_the_canthi_in_the_truth():
    sc = scene.Scene(people=[scene.Person(37.0, glasses=True)])
    _, truth = scene.render(sc, 0)
    assert truth["people"][0]["canthus_visible"] is False
