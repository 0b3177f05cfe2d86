"""The gateway's notion of time: one injectable clock, and local days and hours.

Everything time-based (offline detection, repeating alerts, command expiry, daily reports,
retention) asks a `Clock` for "now" instead of calling time.time(), so tests drive days with a
`ManualClock`. Days and hours are local to the checkpoint (Asia/Shanghai by default).
"""
from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# Every zone's UTC offset is a multiple of 15 minutes, so a 15-minute bucket has one local hour.
_BUCKET_MS = 900_000


class Clock(Protocol):
    def now_ms(self) -> int:
        """UTC Unix milliseconds."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock tests set and advance; thread-safe."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def set(self, ms: int) -> None:
        with self._lock:
            self._now = ms

    def advance(self, ms: int) -> int:
        with self._lock:
            self._now += ms
            return self._now


class LocalTime:
    """Conversions between UTC milliseconds and the checkpoint's local days and hours."""

    def __init__(self, zone: str = "Asia/Shanghai") -> None:
        self.zone_name = zone
        self.zone = ZoneInfo(zone)
        self._bucket = lru_cache(maxsize=4096)(self._bucket_uncached)

    def _bucket_uncached(self, bucket: int) -> tuple[str, int]:
        local = datetime.fromtimestamp(bucket * _BUCKET_MS / 1000, self.zone)
        return local.date().isoformat(), local.hour

    def day_hour(self, ms: int) -> tuple[str, int]:
        """-> ("YYYY-MM-DD", hour 0-23), local."""
        return self._bucket(ms // _BUCKET_MS)

    def day(self, ms: int) -> str:
        return self.day_hour(ms)[0]

    def day_bounds(self, day: str) -> tuple[int, int]:
        """UTC ms of local midnight starting `day` and of the next local midnight (23-25 h later)."""
        d = date.fromisoformat(day)
        start = datetime(d.year, d.month, d.day, tzinfo=self.zone)
        nxt = d + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.zone)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def at(self, day: str, hhmm: tuple[int, int]) -> int:
        """UTC ms of local time hh:mm on `day`."""
        d = date.fromisoformat(day)
        return int(datetime(d.year, d.month, d.day, hhmm[0], hhmm[1], tzinfo=self.zone).timestamp() * 1000)

    def previous_day(self, day: str) -> str:
        return (date.fromisoformat(day) - timedelta(days=1)).isoformat()

    def format(self, ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, self.zone).strftime("%Y-%m-%d %H:%M:%S")
