"""Shared helpers: run a rendered scene through thermal -> screening, as the app would."""
from __future__ import annotations

from array import array

from kiosk import screening, thermal
from sim import scene

FRAME_MS = 125  # 8 Hz refresh


def warmed_analyzer(sc: scene.Scene, empty_frames: int = 3) -> tuple[thermal.Analyzer, int]:
    """An Analyzer that has settled (Ta stable) and learned the empty lane's background."""
    an = thermal.Analyzer(fov_deg=sc.fov_deg, warmup_ms=0)
    empty = scene.Scene(air_c=sc.air_c, fov_deg=sc.fov_deg, seed=sc.seed, background=sc.background,
                        refresh_hz=sc.refresh_hz)
    t = 0
    for i in range(empty_frames):
        an.update(array("f", scene.render(empty, 10_000 + i)[0]), sc.air_c, 30.0, t)
        t += FRAME_MS
    return an, t


def screen(sc: scene.Scene, max_frames: int = 40, cfg=None):
    """(result, record) of the first decision for a person standing still, or (None, None)."""
    an, t = warmed_analyzer(sc)
    s = screening.Screener(cfg)
    for i in range(max_frames):
        rd = an.update(array("f", scene.render(sc, i)[0]), sc.air_c, 30.0, t)
        r = s.frame(rd, t)
        if r is not None:
            return r, s.last
        t += FRAME_MS
    return None, None
