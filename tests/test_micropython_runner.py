from tests.micropython_runner import run_micropython


def test_runs_real_micropython_with_firmware_on_path():
    out = run_micropython("import sys, kiosk; print(sys.implementation.name, sys.implementation.version[:2])")
    assert out.split() == ["micropython", "(1,", "29)"]
