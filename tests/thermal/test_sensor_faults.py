"""Every fault gives a clear error, never a made-up value (issue 3, "Bad input")."""
from __future__ import annotations

import errno

import pytest

from kiosk.mlx90640 import MLX90640, SensorError
from kiosk.sht31 import SHT31
from sim.board.i2c import I2C, nack, register_of
from sim.devices.mlx90640 import MLX90640Emulator
from sim.devices.mlx90640_eeprom import generate_eeprom
from sim.devices.sht31 import SHT31Emulator
from tests.thermal.rigs import VirtualClock, face_scene, new_frame, rig


def test_absent_sensor_is_enodev_at_begin():
    bus = I2C()
    with pytest.raises(SensorError, match="EEPROM.*ENODEV|Errno 19") as e:
        MLX90640(bus, sleep_ms=lambda ms: None).begin()
    assert isinstance(e.value, OSError)


def test_unplugged_mid_run_raises_instead_of_returning_old_frame():
    _, emu, drv = rig(generate_eeprom(1))
    frame = new_frame()
    drv.read(frame)
    emu.unplugged = True
    with pytest.raises(SensorError, match="status"):
        drv.read(frame)


def test_nack_on_ram_read_is_a_sensor_error():
    _, emu, drv = rig(generate_eeprom(1))
    emu.fault_hook = nack(lambda t: register_of(t) == 0x0400, times=1)
    with pytest.raises(SensorError, match=r"RAM \(0x0400\)"):
        drv.read(new_frame())
    drv.read(new_frame())          # the fault was one transaction: the next frame is fine


def test_nack_on_control_write_fails_begin():
    bus = I2C(freq=400_000)
    emu = bus.attach(MLX90640Emulator(generate_eeprom(1)))
    emu.fault_hook = nack(lambda t: register_of(t) == 0x800D and t.read_len == 0)
    with pytest.raises(SensorError, match="writing control register"):
        MLX90640(bus, sleep_ms=lambda ms: None).begin()


def test_stuck_data_ready_times_out_on_the_clock_given():
    clock = VirtualClock()
    _, emu, drv = rig(generate_eeprom(1), clock=clock)
    emu.stuck_data_ready = True
    with pytest.raises(SensorError, match="no new data within"):
        drv.read(new_frame(), timeout_ms=300)
    assert 300 <= clock.slept_ms <= 320


@pytest.mark.parametrize("kind", ["random", "zeros", "ones"])
def test_garbage_eeprom_is_refused(kind):
    bus = I2C(freq=400_000)
    emu = bus.attach(MLX90640Emulator(generate_eeprom(1)))
    emu.eeprom_fault = kind
    drv = MLX90640(bus, sleep_ms=lambda ms: None)
    with pytest.raises(SensorError, match="EEPROM"):
        drv.begin()
    with pytest.raises(SensorError, match="begin"):
        drv.read(new_frame())


def test_eeprom_read_too_fast_is_refused_by_the_part():
    bus = I2C(freq=1_000_000)
    emu = bus.attach(MLX90640Emulator(generate_eeprom(1)))
    with pytest.raises(SensorError, match="EEPROM"):
        MLX90640(bus, sleep_ms=lambda ms: None).begin()
    assert emu.eeprom_read_freqs == [1_000_000]


def test_frozen_frame_is_detected():
    _, emu, drv = rig(generate_eeprom(1), frozen_limit=3)
    emu.set_scene(face_scene(20))
    frame = new_frame()
    drv.read(frame)
    emu.frozen = True
    with pytest.raises(SensorError, match="frozen"):
        for _ in range(3):
            drv.read(frame)


def test_a_live_sensor_with_a_static_scene_is_not_frozen():
    _, emu, drv = rig(generate_eeprom(1), frozen_limit=2)
    emu.set_scene(face_scene(20))
    frame = new_frame()
    for _ in range(20):
        drv.read(frame)


def test_sht31_crc_error_nack_and_absence():
    bus = I2C()
    emu = bus.attach(SHT31Emulator(temp_c=5.0, rh=80.0))
    drv = SHT31(bus, sleep_ms=lambda ms: None)
    emu.crc_fault = True
    with pytest.raises(SensorError, match="CRC"):
        drv.read()
    emu.crc_fault = False
    emu.stuck_busy = True
    with pytest.raises(SensorError, match="no result"):
        drv.read()
    emu.stuck_busy = False
    emu.fault_hook = nack(lambda t: t.read_len == 0, code=errno.EIO)
    with pytest.raises(SensorError, match="starting"):
        drv.read()
    emu.fault_hook = None
    emu.unplugged = True
    with pytest.raises(SensorError):
        drv.read()
    emu.unplugged = False
    t, rh = drv.read()
    assert abs(t - 5.0) < 0.01 and abs(rh - 80.0) < 0.01


def test_sht31_timed_mode_waits_for_the_measurement():
    clock = VirtualClock()
    bus = I2C()
    bus.attach(SHT31Emulator(mode="timed", clock=clock, temp_c=31.5, rh=20.0))
    t, rh = SHT31(bus, sleep_ms=clock.sleep_ms).read()
    assert abs(t - 31.5) < 0.01 and abs(rh - 20.0) < 0.01
    assert clock.slept_ms >= 16
