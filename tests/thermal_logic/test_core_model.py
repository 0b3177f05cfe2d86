"""The core model against the facial data it was calibrated on (PhysioNet face-oral-temp group 1)."""
import numpy as np
import pytest

from kiosk import thermal
from tools import calibrate_core as cc


@pytest.fixture(scope="module")
def data():
    return cc.load_all()


def test_loader_handles_bom_header_rows_and_empty_cells(data):
    n = len(data["oral"])
    assert 1000 < n <= 544 + 539            # subjects with a missing needed value are dropped
    for k in ("face_max", "oral", "air", "distance"):
        assert np.all(np.isfinite(data[k]))
    assert 34.0 < np.median(data["face_max"]) < 37.0
    assert 36.0 < np.median(data["oral"]) < 37.5


def test_cross_validated_rmse_floor(data):
    fit, predict = cc.fit_level()
    cv = cc.cv_predict(fit, predict, data, k=10)
    assert cc.rmse(cv, data["oral"]) <= 0.45
    for cam in (0, 1):  # and per camera
        m = data["camera"] == cam
        sub = {k: v[m] for k, v in data.items()}
        cv = cc.cv_predict(fit, predict, sub, k=10)
        assert cc.rmse(cv, sub["oral"]) <= 0.45


def test_firmware_coefficients_as_written_fit_the_data(data):
    pred = cc.model_core(data["face_max"], data["air"], data["distance"])
    assert cc.rmse(pred, data["oral"]) <= 0.45
    assert abs(np.mean(pred - data["oral"])) < 0.1
    sens, spec = cc.sens_spec(pred, data["oral"], 37.5)
    assert sens >= 0.8 and spec >= 0.85


def test_a_broken_model_fails_the_floor(data):
    # a sign error in the air term, or reading the forehead maximum as if it were the face maximum
    bad = data["face_max"] + thermal.C0 - thermal.C1 * (thermal.T_REF_C - data["air"])
    assert cc.rmse(bad, data["oral"]) > 0.45


def test_in_range_flags_follow_the_data_coverage(data):
    assert thermal.core_estimate(35.5, 22.0, 0.7)[1] is True
    assert thermal.core_estimate(35.5, -10.0, 0.7)[1] is False
    assert thermal.core_estimate(35.5, 22.0, 1.3)[1] is False
    lo, hi = thermal.AIR_RANGE_C
    assert lo <= data["air"].min() + 0.5 and hi >= data["air"].max()


def test_colder_air_means_a_larger_offset():
    est = [thermal.core_estimate(34.0, a, 0.7)[0] for a in (-10.0, 0.0, 10.0, 22.0, 30.0)]
    assert all(a > b for a, b in zip(est, est[1:]))
