"""scene -> thermal -> screening: the floors from issue 3 (simulated people)."""
import pytest

from sim import scene
from tests.thermal_logic.helpers import FRAME_MS, screen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_febrile_person_at_20c_and_0_6m_is_fever(seed):
    r, rec = screen(scene.random_scene(seed, 38.5, 20.0, 0.6, 55.0))
    assert r == "fever", rec


@pytest.mark.parametrize("seed,dist,fov,wind,bg", [
    (1, 0.6, 55.0, 0.0, "wall"), (2, 1.0, 55.0, 0.0, "wall"), (3, 0.4, 110.0, 0.0, "wall"),
    (4, 0.6, 55.0, 3.0, "wall"), (5, 0.8, 55.0, 0.0, "sky"), (6, 0.5, 55.0, 1.0, "engine")])
def test_healthy_person_in_january_cold_is_never_fever(seed, dist, fov, wind, bg):
    sc = scene.random_scene(seed, 36.6, -10.0, dist, fov, wind_m_s=wind, background=bg, accessories=True)
    r, rec = screen(sc)
    assert r in ("pass", "recheck", "invalid", None), rec
    assert r != "fever"


def test_decision_within_one_second_standing_still_at_8hz():
    for seed in range(4):
        r, rec = screen(scene.random_scene(seed, 36.9, 22.0, 0.7, 55.0))
        assert r is not None and rec["elapsed_ms"] + FRAME_MS <= 1000


def test_sunny_wall_and_engine_behind_do_not_become_the_face():
    for bg in ("sunny_wall", "engine"):
        r, rec = screen(scene.random_scene(7, 36.8, 22.0, 0.6, 55.0, background=bg))
        assert r in ("pass", "recheck") and 36.0 < rec["core_c"] < 37.6, (bg, rec)
