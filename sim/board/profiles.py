"""Board profile checker: hardware/boards/<name>.json against what the chip can do with each pin.

    report = check(profile)        # Report(errors, warnings); errors make a profile unusable
    python -m sim.board.profiles [paths...]   # all shipped boards by default; exit 1 on errors

Each pin a profile uses gets a role: "i2c" (SDA/SCL: open-drain, so it must be able to drive),
"out" (UART TX, WS2812 data, PWM) or "in" (UART RX, a button). Errors:
  * a pin used twice (including pins the board itself uses, listed in "board_pins");
  * a GPIO the chip does not have, or one wired to the module's flash/PSRAM;
  * an output role on an input-only pin, or an internal pull on a pin that has none;
  * the USB or console UART pins (the technician's REPL and USB flashing must keep working);
  * I2C: duplicate controller ids, unknown buses, duplicate or out-of-range device addresses;
  * UART0 for a device (it is the REPL console on both chips).
Warnings: strapping pins (their level at reset selects the boot mode or flash voltage: a
peripheral pulling one can stop the board from booting), and bus speeds above what a part on the
bus or the chip's I2C driver is specified for.

Chip facts, from Espressif's datasheets and ESP-IDF documentation:
ESP32 (ESP32 Series Datasheet, "Pin Definitions" and "Strapping Pins"):
  GPIOs 0-19, 21-23, 25-27, 32-39; 6-11 are the SPI flash (SD_CLK, SD_DATA0-3, SD_CMD) on
  every module; 34-39 are input-only, with no internal pull-up/down; on WROVER modules 16 and 17
  drive the PSRAM (ESP32-WROVER-E datasheet); strapping: 0, 2, 5, 12 (MTDI: selects the flash
  voltage, 1.8 V if high at reset - a 3.3 V module then does not boot), 15; UART0 (REPL) on 1/3.
ESP32-S3 (ESP32-S3 Series Datasheet, "Pin Overview", ESP32-S3-WROOM-1 datasheet):
  GPIOs 0-21, 26-48; 26-32 are the SPI flash/PSRAM; with octal PSRAM or flash (N8R8, N16R8,
  WROOM-2) 33-37 are its data lines and DQS too; 19/20 are USB D-/D+; strapping: 0, 3, 45
  (VDD_SPI voltage), 46; UART0 (REPL) on 43/44. No input-only pins.
ESP-IDF's I2C driver documents master SCL up to 400 kHz on the ESP32-S3; the ESP32 datasheet
  gives up to 5 MHz, limited by the pull-ups.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOARDS = Path(__file__).resolve().parents[2] / "hardware" / "boards"


@dataclass(frozen=True)
class Chip:
    name: str
    gpios: frozenset[int]
    flash: frozenset[int]                # SPI flash / PSRAM on every module
    octal: frozenset[int]                # further flash/PSRAM lines with octal PSRAM/flash
    wrover_psram: frozenset[int]         # PSRAM lines on modules with quad PSRAM (ESP32 WROVER)
    input_only: frozenset[int]
    usb: frozenset[int]
    console: frozenset[int]
    strapping: dict[int, str]
    i2c_ids: int
    uart_ids: int
    i2c_max_hz: int


ESP32 = Chip(
    "esp32",
    gpios=frozenset([*range(0, 20), 21, 22, 23, 25, 26, 27, *range(32, 40)]),
    flash=frozenset(range(6, 12)),
    octal=frozenset(),
    wrover_psram=frozenset([16, 17]),
    input_only=frozenset(range(34, 40)),
    usb=frozenset(),
    console=frozenset([1, 3]),
    strapping={0: "boot mode (download if low)", 2: "boot mode (must be low/floating for download)",
               5: "SDIO slave timing", 12: "MTDI selects the flash voltage: high at reset = 1.8 V, a 3.3 V module "
               "will not boot", 15: "MTDO: boot log / SDIO timing"},
    i2c_ids=2, uart_ids=3, i2c_max_hz=5_000_000,
)
ESP32S3 = Chip(
    "esp32s3",
    gpios=frozenset([*range(0, 22), *range(26, 49)]),
    flash=frozenset(range(26, 33)),
    octal=frozenset(range(33, 38)),
    wrover_psram=frozenset(),
    input_only=frozenset(),
    usb=frozenset([19, 20]),
    console=frozenset([43, 44]),
    strapping={0: "boot mode (download if low)", 3: "JTAG signal source", 45: "VDD_SPI voltage",
               46: "boot mode / ROM log"},
    i2c_ids=2, uart_ids=3, i2c_max_hz=400_000,
)
CHIPS = {c.name: c for c in (ESP32, ESP32S3)}

# Highest SCL each part is specified for (datasheets: MLX90640 FM+ 1 MHz, SHT3x-DIS 1 MHz,
# SSD1306 fast mode 400 kHz: t_cycle >= 2.5 us).
PART_I2C_MAX_HZ = {"mlx90640": 1_000_000, "sht31": 1_000_000, "ssd1306": 400_000}
# EEPROM of the MLX90640 is read at <= 400 kHz (DESIGN.md section 5, datasheet 8.1).
EEPROM_MAX_HZ = 400_000
PART_ROLE = {"ws2812": "out", "pwm": "out", "pin": "in"}
BAUDS = (9600, 19200, 38400, 57600, 115200)
PULLS = ("up", "down", "none", "external")


@dataclass
class Report:
    name: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _as_gpio(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def check(profile: dict[str, Any]) -> Report:
    rep = Report(str(profile.get("name", "?")))
    chip = CHIPS.get(profile.get("mcu", ""))
    if chip is None:
        rep.errors.append(f"mcu: unknown chip {profile.get('mcu')!r} (known: {', '.join(CHIPS)})")
        return rep
    for key in ("name", "description", "flash_mb", "fs_bytes", "i2c", "uart", "parts"):
        if key not in profile:
            rep.errors.append(f"{key}: missing")
    if rep.errors:
        return rep
    psram = profile.get("psram")
    used: dict[int, str] = {}

    def use(pin: Any, role: str, what: str, pull: str | None = None) -> None:
        gpio = _as_gpio(pin)
        if gpio is None:
            rep.errors.append(f"{what}: pin must be a GPIO number, got {pin!r}")
            return
        if gpio in used:
            rep.errors.append(f"{what}: GPIO{gpio} is already used by {used[gpio]}")
            return
        used[gpio] = what
        if gpio not in chip.gpios:
            rep.errors.append(f"{what}: GPIO{gpio} does not exist on the {chip.name}")
            return
        if gpio in chip.flash:
            rep.errors.append(f"{what}: GPIO{gpio} is wired to the module's SPI flash/PSRAM")
        elif gpio in chip.octal and psram == "octal":
            rep.errors.append(f"{what}: GPIO{gpio} is an octal PSRAM line on this module")
        elif gpio in chip.wrover_psram and psram:
            rep.errors.append(f"{what}: GPIO{gpio} drives the PSRAM on WROVER modules")
        if gpio in chip.usb and role != "board":
            rep.errors.append(f"{what}: GPIO{gpio} is USB D-/D+ (flashing and the REPL need it)")
        if gpio in chip.console and role != "board":
            rep.errors.append(f"{what}: GPIO{gpio} is the UART0 console (the technician's REPL)")
        if gpio in chip.input_only and role in ("out", "i2c"):
            rep.errors.append(f"{what}: GPIO{gpio} is input-only on the {chip.name}, cannot be {role}")
        if gpio in chip.input_only and pull in ("up", "down"):
            rep.errors.append(f"{what}: GPIO{gpio} has no internal pull-{pull}; use an external resistor")
        if gpio in chip.strapping and role != "board":
            rep.warnings.append(f"{what}: GPIO{gpio} is a strapping pin ({chip.strapping[gpio]})")

    for pin, what in sorted((profile.get("board_pins") or {}).items()):
        try:
            use(int(pin), "board", f"board ({what})")
        except ValueError:
            rep.errors.append(f"board_pins: {pin!r} is not a GPIO number")

    buses = profile["i2c"]
    seen_ids: dict[int, str] = {}
    for bus, spec in sorted(buses.items()):
        ident = spec.get("id")
        if not isinstance(ident, int) or not 0 <= ident < chip.i2c_ids:
            rep.errors.append(f"i2c.{bus}.id: {ident!r}, the {chip.name} has I2C0..I2C{chip.i2c_ids - 1}")
        elif ident in seen_ids:
            rep.errors.append(f"i2c.{bus}.id: I2C{ident} is already bus {seen_ids[ident]}")
        else:
            seen_ids[ident] = bus
        use(spec.get("sda"), "i2c", f"i2c.{bus}.sda")
        use(spec.get("scl"), "i2c", f"i2c.{bus}.scl")
        for key in ("eeprom_hz", "frame_hz"):
            hz = spec.get(key)
            if not isinstance(hz, int) or not 10_000 <= hz <= 5_000_000:
                rep.errors.append(f"i2c.{bus}.{key}: {hz!r} is not a bus speed in Hz")
            elif hz > chip.i2c_max_hz:
                rep.warnings.append(f"i2c.{bus}.{key}: {hz} Hz is above the {chip.name}'s documented "
                                    f"{chip.i2c_max_hz} Hz")
        if isinstance(spec.get("eeprom_hz"), int) and spec["eeprom_hz"] > EEPROM_MAX_HZ:
            rep.errors.append(f"i2c.{bus}.eeprom_hz: the MLX90640 EEPROM is read at <= {EEPROM_MAX_HZ} Hz")

    uart_ids: dict[int, str] = {}
    for name, spec in sorted(profile["uart"].items()):
        ident = spec.get("id")
        if not isinstance(ident, int) or not 0 <= ident < chip.uart_ids:
            rep.errors.append(f"uart.{name}.id: {ident!r}, the {chip.name} has UART0..UART{chip.uart_ids - 1}")
        elif ident == 0:
            rep.errors.append(f"uart.{name}.id: UART0 is the REPL console")
        elif ident in uart_ids:
            rep.errors.append(f"uart.{name}.id: UART{ident} is already {uart_ids[ident]}")
        else:
            uart_ids[ident] = name
        use(spec.get("tx"), "out", f"uart.{name}.tx")
        use(spec.get("rx"), "in", f"uart.{name}.rx")
        if spec.get("baud") not in BAUDS:
            rep.errors.append(f"uart.{name}.baud: {spec.get('baud')!r} is not one of {BAUDS}")

    addresses: dict[tuple[str, int], str] = {}
    for name, part in sorted(profile["parts"].items()):
        ptype = part.get("type")
        if "bus" in part:
            bus = part["bus"]
            if bus not in buses:
                rep.errors.append(f"parts.{name}.bus: no I2C bus {bus!r}")
                continue
            addr = part.get("address")
            if not isinstance(addr, int) or not 0x08 <= addr <= 0x77:
                rep.errors.append(f"parts.{name}.address: {addr!r} is not a 7-bit device address (0x08..0x77)")
            elif (bus, addr) in addresses:
                rep.errors.append(f"parts.{name}.address: 0x{addr:02x} on bus {bus} is already {addresses[bus, addr]}")
            else:
                addresses[bus, addr] = name
            limit = PART_I2C_MAX_HZ.get(str(ptype))
            hz = buses[bus].get("frame_hz")
            if limit and isinstance(hz, int) and hz > limit:
                rep.warnings.append(f"parts.{name}: bus {bus} runs at {hz} Hz, the {ptype} is specified up to {limit} Hz")
        if "pin" in part:
            role = PART_ROLE.get(str(ptype))
            if role is None:
                rep.errors.append(f"parts.{name}.type: {ptype!r} has a pin but no known role")
                continue
            pull = part.get("pull")
            if pull is not None and pull not in PULLS:
                rep.errors.append(f"parts.{name}.pull: {pull!r} is not one of {PULLS}")
            use(part["pin"], role, f"parts.{name}.pin", pull)
    return rep


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def shipped() -> list[Path]:
    return sorted(BOARDS.glob("*.json"))


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or shipped()
    failed = 0
    for path in paths:
        rep = check(load(path))
        print(f"{path.name}: {'ok' if rep.ok else 'FAILED'}")
        for e in rep.errors:
            print("  error:   " + e)
        for w in rep.warnings:
            print("  warning: " + w)
        failed += not rep.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
