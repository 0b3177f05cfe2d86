"""Board profiles: every shipped board passes the pin checker; the checker rejects pins used twice
and pins the chip cannot use for the role they are given."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from sim.board import profiles


def _board(name: str) -> dict[str, Any]:
    return copy.deepcopy(profiles.load(profiles.BOARDS / (name + ".json")))


@pytest.mark.parametrize("path", profiles.shipped(), ids=lambda p: p.stem)
def test_shipped_boards_pass(path: Any) -> None:
    prof = profiles.load(path)
    assert prof["name"] == path.stem
    rep = profiles.check(prof)
    assert rep.errors == []
    assert {"thermal", "air", "display", "led_ring", "buzzer", "button"} <= set(prof["parts"])
    assert prof["parts"]["thermal"]["fov_deg"] == 55


def test_at_least_two_more_real_boards() -> None:
    names = {p.stem for p in profiles.shipped()}
    assert {"esp32-devkitc-v4", "esp32-s3-devkitc-1-n8r8", "esp32-wrover-e-devkitc"} <= names


def _errors(prof: dict[str, Any]) -> list[str]:
    return profiles.check(prof).errors


def test_pin_used_twice() -> None:
    p = _board("esp32-devkitc-v4")
    p["parts"]["buzzer"]["pin"] = 13  # the LED ring's pin
    assert _errors(p) == ["parts.led_ring.pin: GPIO13 is already used by parts.buzzer.pin"]
    s3 = _board("esp32-s3-devkitc-1-n8r8")
    s3["parts"]["buzzer"]["pin"] = 38  # the board's own RGB LED
    assert _errors(s3) == ["parts.buzzer.pin: GPIO38 is already used by board (on-board RGB LED (WS2812, "
                           "board v1.1; GPIO48 on v1.0))"]


@pytest.mark.parametrize("board,where,pin,message", [
    ("esp32-devkitc-v4", ("parts", "buzzer"), 6, "parts.buzzer.pin: GPIO6 is wired to the module's SPI flash/PSRAM"),
    ("esp32-devkitc-v4", ("parts", "led_ring"), 11, "parts.led_ring.pin: GPIO11 is wired to the module's SPI flash/PSRAM"),
    ("esp32-devkitc-v4", ("uart", "scanner", "tx"), 34,
     "uart.scanner.tx: GPIO34 is input-only on the esp32, cannot be out"),
    ("esp32-devkitc-v4", ("i2c", "sensor", "sda"), 36, "i2c.sensor.sda: GPIO36 is input-only on the esp32, cannot be i2c"),
    ("esp32-devkitc-v4", ("parts", "led_ring"), 39, "parts.led_ring.pin: GPIO39 is input-only on the esp32, cannot be out"),
    ("esp32-devkitc-v4", ("parts", "button"), 35, "parts.button.pin: GPIO35 has no internal pull-up; use an external resistor"),
    ("esp32-devkitc-v4", ("parts", "buzzer"), 20, "parts.buzzer.pin: GPIO20 does not exist on the esp32"),
    ("esp32-devkitc-v4", ("uart", "scanner", "rx"), 3, "uart.scanner.rx: GPIO3 is the UART0 console (the technician's REPL)"),
    ("esp32-wrover-e-devkitc", ("parts", "buzzer"), 16, "parts.buzzer.pin: GPIO16 drives the PSRAM on WROVER modules"),
    ("esp32-s3-devkitc-1-n8r8", ("parts", "buzzer"), 35, "parts.buzzer.pin: GPIO35 is an octal PSRAM line on this module"),
    ("esp32-s3-devkitc-1-n8r8", ("i2c", "sensor", "scl"), 30, "i2c.sensor.scl: GPIO30 is wired to the module's SPI flash/PSRAM"),
    ("esp32-s3-devkitc-1-n8r8", ("uart", "scanner", "rx"), 22, "uart.scanner.rx: GPIO22 does not exist on the esp32s3"),
])
def test_pin_the_chip_cannot_use_for_the_role(board: str, where: tuple[str, ...], pin: int, message: str) -> None:
    p = _board(board)
    node = p
    for key in where[:-1]:
        node = node[key]
    leaf = where[-1] if where[0] != "parts" else None
    if leaf is None:
        node[where[-1]]["pin"] = pin
    else:
        node[leaf] = pin
    assert message in _errors(p)


def test_usb_pins_on_the_s3() -> None:
    p = _board("esp32-s3-devkitc-1-n8r8")
    del p["board_pins"]["19"]
    p["parts"]["buzzer"]["pin"] = 19
    assert "parts.buzzer.pin: GPIO19 is USB D-/D+ (flashing and the REPL need it)" in _errors(p)


def test_octal_lines_are_free_with_quad_psram() -> None:
    p = _board("esp32-s3-devkitc-1-n8r8")
    p["psram"] = "quad"  # an N8R2 module: 33-37 are GPIOs again
    p["parts"]["buzzer"]["pin"] = 35
    assert _errors(p) == []


def test_buses_and_addresses() -> None:
    p = _board("esp32-devkitc-v4")
    p["parts"]["air"]["address"] = 0x33
    p["parts"]["display"]["bus"] = "ui"
    p["uart"]["scanner"]["id"] = 0
    p["i2c"]["sensor"]["eeprom_hz"] = 1_000_000
    assert _errors(p) == [
        "i2c.sensor.eeprom_hz: the MLX90640 EEPROM is read at <= 400000 Hz",
        "uart.scanner.id: UART0 is the REPL console",
        "parts.display.bus: no I2C bus 'ui'",
        "parts.thermal.address: 0x33 on bus sensor is already air",
    ]


def test_strapping_pins_warn() -> None:
    p = _board("esp32-wrover-e-devkitc")
    p["parts"]["buzzer"]["pin"] = 12
    rep = profiles.check(p)
    assert rep.errors == []
    assert any(w.startswith("parts.buzzer.pin: GPIO12 is a strapping pin (MTDI selects the flash voltage") for w in rep.warnings)
    s3 = _board("esp32-s3-devkitc-1-n8r8")
    s3["parts"]["button"]["pin"] = 0
    assert "parts.button.pin: GPIO0 is a strapping pin (boot mode (download if low))" in profiles.check(s3).warnings


def test_cli_exit_code(tmp_path: Any, capsys: Any) -> None:
    assert profiles.main([]) == 0
    bad = _board("esp32-devkitc-v4")
    bad["parts"]["buzzer"]["pin"] = 7
    path = tmp_path / "bad.json"
    import json
    path.write_text(json.dumps(bad))
    assert profiles.main([str(path)]) == 1
    assert "GPIO7 is wired to the module's SPI flash" in capsys.readouterr().out


def test_hardware_docs_cover_every_board() -> None:
    import xml.etree.ElementTree as ET
    root = profiles.BOARDS.parent
    readme = (root / "README.md").read_text()
    for path in profiles.shipped():
        assert f"`{path.stem}`" in readme, path.stem
    for part in ("MLX90640ESF-BAB", "SHT31", "GM65", "WS2812B", "SSD1306", "PS1240P02BT", "IRM-10-5"):
        assert part in readme, part
    svg = ET.parse(root / "wiring.svg").getroot()
    assert svg.tag.endswith("svg")
