"""Run a scenario: broker, gateway and every kiosk of the scenario, its crowd, weather and faults.

In-process kiosks run the unmodified firmware (`kiosk.app.App`) on SimBoards, many per process,
on one asyncio loop - virtual (sim.vtime) in accelerated mode. The run writes `truth.jsonl`
beside the gateway's database: every person (true core temperature, pass, arrival, lane,
kiosk), every injected fault, and every event the kiosks created (their ledgers), which
`python -m sim compare` matches against the store.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kiosk.app import App
from sim import scene
from sim.board.board import SimBoard
from sim.board.clock import SimClock
from sim.broker import Broker
from sim.crowd import LaneView
from sim.population import EXPECTED_VERDICT, FEVER_C, Pki, Population
from sim.scenario import KioskSpec, Scenario
from sim.vtime import VirtualClock, VirtualEventLoop

SUBPAGE_S = 1 / 8
WEATHER_EVERY_S = 60.0


class WeatherView(LaneView):
    """A lane's scene under the scenario's weather, rendered for the frame-level fast path.

    An empty lane's frame is the noiseless background (cached per weather) plus fresh sensor
    noise: ~40x cheaper than a full render, which is what lets hundreds of kiosks run in one
    process. A lane with someone in it gets the full renderer (sway, physiology, blur)."""

    def __init__(self, air_c: float, seed: int) -> None:
        super().__init__(air_c=air_c, seed=seed)
        self._empty: tuple[tuple[float, float, str], np.ndarray] | None = None
        self._sigma = scene.noise_sigma(self.scene)

    def set_weather(self, air_c: float, wind_m_s: float, background: str) -> None:
        self.scene.air_c, self.scene.wind_m_s, self.scene.background = air_c, wind_m_s, background

    def render(self) -> list[float]:
        self.frame_index += 1
        s = self.scene
        if s.people:
            temps, _ = scene.render(s, self.frame_index)
            return temps
        key = (round(s.air_c, 2), round(s.wind_m_s, 1), s.background)
        if self._empty is None or self._empty[0] != key:
            base, _ = scene.render(s, 0, noise=False)
            self._empty = (key, np.array(base))
        rng = np.random.default_rng([s.seed, self.frame_index])
        frame: list[float] = (self._empty[1] + rng.normal(0.0, self._sigma, 768)).tolist()
        return frame


@dataclass
class SimKiosk:
    spec: KioskSpec
    index: int
    board: SimBoard
    view: WeatherView
    people: Population
    app: App | None = None
    task: asyncio.Task[Any] | None = None
    powered: bool = True
    connecting: int = 0
    arrived: int = 0


@dataclass
class Progress:
    elapsed_s: float
    duration_s: float
    people: int
    screened: int
    fevers: int
    events: int
    queued: int
    kiosks_up: int
    kiosks: int
    speed: float


@dataclass
class ScenarioRun:
    sc: Scenario
    run_dir: Path
    broker: Broker
    clock: VirtualClock
    pki: Pki
    kiosks: list[SimKiosk] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _started_real: float = 0.0
    _origin: float = 0.0

    def __post_init__(self) -> None:
        sc = self.sc
        for i, spec in enumerate(sc.kiosks):
            air, wind, sun = sc.weather_at(0)
            view = WeatherView(air, seed=sc.seed * 1000 + i)
            view.set_weather(air, wind, self._background(sun))
            config = {"checkpoint": spec.checkpoint, "kiosk": spec.kiosk, "lane": spec.lane, "dir": spec.direction,
                      "broker_host": "127.0.0.1", "broker_port": self.broker.port, "keepalive_s": 10,
                      "telemetry_s": 30, "warmup_ms": 3000}
            if sc.verdict_timeout_ms:
                config["verdict_timeout_ms"] = sc.verdict_timeout_ms
            config.update(spec.config)
            clock = SimClock(monotonic=self.clock.monotonic, wall=self.clock.wall, sleep=self.clock.sleep)
            board = SimBoard(self.run_dir / "kiosks" / spec.checkpoint / spec.kiosk, config, spec.board,
                             unit_seed=sc.seed * 100 + i, air_c=air, clock=clock,
                             fast_frames=view.render if spec.sensor == "frame" else None)
            _provision(board, sc.seed, spec)
            self._wrap_connect(board, i)
            people = Population(sc.population, self.pki, sc.seed, i, f"{spec.checkpoint}/{spec.kiosk}/")
            self.kiosks.append(SimKiosk(spec, i, board, view, people))

    def _background(self, sun: bool) -> str:
        return "sunny_wall" if sun else str(self.sc.weather["background"])

    def _wrap_connect(self, board: SimBoard, i: int) -> None:
        """Count TCP connects in flight: virtual time must not jump over a connect to 127.0.0.1."""
        inner = board.open_connection

        async def open_connection(host: str, port: int) -> Any:
            k = self.kiosks[i]
            k.connecting += 1
            try:
                return await inner(host, port)
            finally:
                k.connecting -= 1

        board.open_connection = open_connection  # type: ignore[method-assign]

    # ---- virtual time's hold rule -----------------------------------------------------------

    def exchange_in_flight(self) -> bool:
        """True while any powered kiosk with a live radio waits for its broker or the gateway:
        a TCP connect, CONNACK, the PUBACK of an event, or a verdict. (Reads the firmware's link
        state; a kiosk whose Wi-Fi is cut waits for nothing that can come.)"""
        for k in self.kiosks:
            app = k.app
            if app is None or not k.powered or not k.board.network.up:
                continue
            if k.connecting:
                return True
            link = app.link
            writer = link._writer
            if writer is None or writer._dead():
                continue
            if not link.connected or link._inflight or app._verifies:
                return True
        return False

    # ---- running ------------------------------------------------------------------------------

    async def run(self, on_progress: Callable[[Progress], None] | None = None, progress_every_s: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualEventLoop):
            loop.set_hold(self.exchange_in_flight)
        random.seed(self.sc.seed)  # the firmware's reconnect jitter uses the random module
        self._started_real = time.monotonic()
        self._origin = self.clock.monotonic()
        self.record({"rec": "run", "scenario": self.sc.name, "seed": self.sc.seed,
                     "start_ms": self.clock.wall_ms(), "duration_s": self.sc.duration_s,
                     "kiosks": [[k.spec.checkpoint, k.spec.kiosk, k.spec.lane, k.spec.direction] for k in self.kiosks]})
        for k in self.kiosks:
            self._boot(k)
            if k.spec.sensor == "register":
                self._tasks.append(asyncio.create_task(self._feed_scene(k)))
        self._tasks.append(asyncio.create_task(self._weather()))
        for f in self.sc.faults:
            self._tasks.append(asyncio.create_task(self._fault(f)))
        traffic = asyncio.gather(*(self._traffic(k) for k in self.kiosks))
        while not traffic.done():
            await asyncio.wait([traffic], timeout=progress_every_s)
            if on_progress is not None:
                on_progress(self.progress())
        await traffic

    def _boot(self, k: SimKiosk) -> None:
        k.app = App(k.board)
        k.task = asyncio.create_task(k.app.run())
        k.powered = True

    async def _feed_scene(self, k: SimKiosk) -> None:
        while True:
            k.board.set_scene(k.view.render(), k.view.air_c)
            await asyncio.sleep(SUBPAGE_S)

    async def _weather(self) -> None:
        while True:
            await asyncio.sleep(WEATHER_EVERY_S)
            air, wind, sun = self.sc.weather_at(self.elapsed())
            for k in self.kiosks:
                k.view.set_weather(air, wind, self._background(sun))
                k.board.air.temp_c = air
                k.board.mlx.air_c = air
                k.board.mlx.read_reflected_c = air

    def elapsed(self) -> float:
        """Seconds since the window opened (the clock may have started earlier, with the services)."""
        return self.clock.monotonic() - self._origin

    async def _traffic(self, k: SimKiosk) -> None:
        sc = self.sc
        uart = k.board.uart("scanner")
        while True:
            now = self.elapsed()
            rate = sc.rate_at(now) * k.spec.rate_scale
            if rate <= 0 or not sc.is_open(k.spec.checkpoint, now):
                await asyncio.sleep(min(60.0, sc.duration_s - now + 0.001))
                if self.elapsed() >= sc.duration_s:
                    return
                continue
            gap = k.people.gap_s(rate)
            if now + gap >= sc.duration_s:
                await asyncio.sleep(sc.duration_s - now)
                return
            await asyncio.sleep(gap)
            p = k.people.next(self.clock.wall())
            k.arrived += 1
            air, wind, _ = sc.weather_at(self.elapsed())
            colour = EXPECTED_VERDICT[p.pass_kind] if p.pass_kind else None
            self.record({"rec": "person", "id": p.pid, "checkpoint": k.spec.checkpoint, "kiosk": k.spec.kiosk,
                         "lane": k.spec.lane, "dir": k.spec.direction, "arrived_ms": self.clock.wall_ms(),
                         "dwell_s": round(p.dwell_s, 3), "core_c": p.person.core_c, "fever": p.person.core_c >= FEVER_C,
                         "code": p.pass_kind, "code_kind": p.code_kind,
                         "verdict": None if colour is None else {"color": colour[0], "valid": colour[1]},
                         "distance_m": round(p.person.distance_m, 3), "air_c": round(air, 2), "wind_m_s": round(wind, 1)})
            k.view.enter(p.person)
            if p.code:
                await asyncio.sleep(0.3)  # they hold their phone up as they step in
                uart.inject(p.code.encode() + b"\r\n")
                await asyncio.sleep(max(0.0, p.dwell_s - 0.3))
            else:
                await asyncio.sleep(p.dwell_s)
            k.view.leave()

    # ---- faults ---------------------------------------------------------------------------------

    async def _fault(self, f: Any) -> None:
        await asyncio.sleep(f.at_s)
        targets = [k for k in self.kiosks if (k.spec.checkpoint, k.spec.kiosk) in set(f.kiosks)]
        start = self.clock.wall_ms()
        if f.kind == "broker_restart":
            self.broker.stop()
            await asyncio.sleep(f.for_s)
            self.broker.start()
        elif f.kind == "wifi_drop":
            for k in targets:
                k.board.network.cut()
            await asyncio.sleep(f.for_s)
            for k in targets:
                k.board.network.restore()
        elif f.kind == "sensor_unplugged":
            for k in targets:
                self._plug(k, False)
            await asyncio.sleep(f.for_s)
            for k in targets:
                self._plug(k, True)
        elif f.kind == "scanner_garbage":
            rng = np.random.default_rng([self.sc.seed, int(f.at_s * 1000), 31337])
            for k in targets:
                k.board.uart("scanner").inject(bytes(rng.integers(0, 256, f.n_bytes, dtype=np.uint8)))
        elif f.kind == "power_cut":
            for k in targets:
                await self._power_off(k)
            await asyncio.sleep(f.for_s)
            for k in targets:
                k.board.network.restore()
                self._boot(k)
        for k in targets or [None]:
            self.record({"rec": "fault", "kind": f.kind, "checkpoint": k.spec.checkpoint if k else None,
                         "kiosk": k.spec.kiosk if k else None, "at_ms": start, "until_ms": self.clock.wall_ms(),
                         "line": f.line})

    @staticmethod
    def _plug(k: SimKiosk, plugged: bool) -> None:
        sensor = getattr(k.board, "_fast", None)
        if sensor is not None:
            sensor.fail_with = None if plugged else OSError(19, "ENODEV (sensor unplugged)")
        k.board.mlx.unplugged = not plugged

    async def _power_off(self, k: SimKiosk) -> None:
        """Power gone: every task stops where it is, no goodbye; the radio with it."""
        k.powered = False
        if k.app is not None:
            writer = k.app.link._writer
            k.board.network.cut()
            if writer is not None:
                k.board.network.orphans.append(writer._writer)
        if k.task is not None:
            k.task.cancel()
            await asyncio.wait([k.task], timeout=5)
        k.app = None

    async def stop(self, drain_s: float = 30.0) -> None:
        """End of the window: pending records flushed, outboxes drained (bounded), clean goodbyes."""
        for t in self._tasks:
            t.cancel()
        for k in self.kiosks:  # every fault is over: radios back, sensors plugged, power on
            if not k.board.network.up:
                k.board.network.restore()
            self._plug(k, True)
            if not k.powered:
                self._boot(k)
        await asyncio.gather(*(k.app.stop(drain_s) for k in self.kiosks if k.app))
        for k in self.kiosks:
            if k.task is not None:
                await asyncio.wait([k.task], timeout=5)
        for k in self.kiosks:
            for e in k.board.ledger:
                self.record({"rec": "event", "checkpoint": k.spec.checkpoint, "kiosk": k.spec.kiosk,
                             "epoch": e["epoch"], "seq": e["seq"], "type": e["type"], "result": e.get("result"),
                             "ts": e.get("ts")})

    # ---- reporting --------------------------------------------------------------------------------

    def record(self, rec: dict[str, Any]) -> None:
        self.truth.append(rec)

    def write_truth(self, path: Path) -> None:
        with open(path, "w") as f:
            for rec in self.truth:
                f.write(json.dumps(rec, sort_keys=True) + "\n")

    def ledger_keys(self) -> set[tuple[str, str, str, int]]:
        return {(k.spec.checkpoint, k.spec.kiosk, e["epoch"], e["seq"]) for k in self.kiosks for e in k.board.ledger}

    def progress(self) -> Progress:
        screened = fevers = events = queued = up = 0
        for k in self.kiosks:
            events += len(k.board.ledger)
            for e in k.board.ledger:
                if e["type"] == "screening":
                    screened += 1
                    fevers += e.get("result") == "fever"
            if k.app is not None:
                queued += k.app.outbox.depth()
                up += bool(k.app.link.connected and k.board.network.up)
        elapsed = min(self.elapsed(), self.sc.duration_s)
        real = max(1e-6, time.monotonic() - self._started_real)
        return Progress(elapsed, self.sc.duration_s, sum(k.arrived for k in self.kiosks), screened, fevers, events,
                        queued, up, len(self.kiosks), elapsed / real)


def _provision(board: SimBoard, seed: int, spec: KioskSpec) -> None:
    """Factory provisioning: the flash store's epoch comes from the seed, so runs repeat exactly."""
    epoch = hashlib.sha256(f"{seed}/{spec.checkpoint}/{spec.kiosk}".encode()).hexdigest()[:16]
    with board.fs.open("state.json", "w") as f:
        f.write(json.dumps({"epoch": epoch, "boot": 0, "seq_hw": 0}))


def start_wall_s(sc: Scenario) -> float:
    """UTC seconds of the scenario's local date and start time."""
    from datetime import date, datetime
    from zoneinfo import ZoneInfo
    d = date.fromisoformat(sc.date)
    h, m = divmod(sc.start_min, 60)
    return datetime(d.year, d.month, d.day, h % 24, m, tzinfo=ZoneInfo(sc.timezone)).timestamp()



# ---- orchestration: services around the kiosks ------------------------------------------------------

@dataclass
class RunResult:
    run_dir: Path
    truth_path: Path
    db_path: Path
    created: int
    stored: int
    people: int
    real_s: float
    virtual_s: float
    ok: bool


def run_scenario(sc: Scenario, run_dir: Path, accelerated: bool = True, stream: Any = None,
                 tty: bool | None = None, http_port: int = 0) -> RunResult:
    """Broker, gateway (on the run's clock), the scenario's kiosks; truth.jsonl and a summary at the end."""
    import sys

    from gateway.summary import format_summary
    from sim import compare, gateway_proc
    from sim.broker import free_port
    from sim.liveview import LiveView
    from sim.services import http_json, stop_process
    from sim.vtime import loop_factory

    out = stream or sys.stdout
    run_dir.mkdir(parents=True, exist_ok=True)
    clock = VirtualClock(start_wall_s(sc), accelerated, shared_file=run_dir / "clock" if accelerated else None)
    pki = Pki(sc.seed, run_dir / "pki")
    http_port = http_port or free_port()
    view = LiveView(out, sc.start_min, tty=tty)
    real0 = time.monotonic()
    with Broker(run_dir / "broker") as broker:
        gateway = gateway_proc.start(run_dir, broker.port, http_port, run_dir / "clock" if accelerated else None,
                                     pki.trust_file, pki.secret_file, sc.timezone)
        try:
            holder: dict[str, ScenarioRun] = {}

            async def main() -> None:
                run = ScenarioRun(sc, run_dir, broker, clock, pki)
                holder["run"] = run
                await run.run(view.update)
                view.finish(run.progress())
                await run.stop()

            with asyncio.Runner(loop_factory=loop_factory(clock)) as runner:
                runner.run(main())
            run = holder["run"]
            virtual_s = clock.monotonic()
            expected = run.ledger_keys()
            deadline = time.monotonic() + 20
            stored = 0
            while time.monotonic() < deadline:  # the gateway is another process: poll its API, bounded
                stored = http_json(http_port, "/api/events/count")["events"]
                if stored >= len(expected):
                    break
                time.sleep(0.1)
            truth_path = run_dir / "truth.jsonl"
            run.write_truth(truth_path)
            summary = http_json(http_port, "/api/summary")
        finally:
            stop_process(gateway)
            clock.close()
    real_s = time.monotonic() - real0
    people = sum(k.arrived for k in run.kiosks)
    print(format_summary(summary), file=out)
    print(f"ground truth: {people} people, "
          f"{sum(1 for r in run.truth if r['rec'] == 'person' and r['fever'])} with core >= 37.3 degC, "
          f"{sum(1 for r in run.truth if r['rec'] == 'fault')} fault(s) injected; {truth_path}", file=out)
    print(f"delivery: kiosks created {len(expected)} events, gateway stored {stored}", file=out)
    d, a = compare.compare(truth_path, run_dir / "gateway.db")
    print(compare.format_report(d, a), file=out)
    print(f"time: {virtual_s:.0f} s simulated in {real_s:.1f} s real (x{virtual_s / max(real_s, 1e-6):.1f}"
          f"{', accelerated' if accelerated else ', real time'})", file=out)
    out.flush()
    return RunResult(run_dir, truth_path, run_dir / "gateway.db", len(expected), stored, people, real_s, virtual_s,
                     stored == len(expected) and d.lost == 0 and d.duplicated == 0)
