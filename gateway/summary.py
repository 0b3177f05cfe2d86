"""Human-readable per-checkpoint summary, shared by the gateway CLI and the simulator."""
from __future__ import annotations

from typing import Any


def format_summary(summary: dict[str, dict[str, Any]]) -> str:
    if not summary:
        return "no checkpoint has reported yet"
    lines = []
    for cp, s in sorted(summary.items()):
        results = s.get("results", {})
        kiosks = s.get("kiosks", {})
        lines.append(
            f"checkpoint {cp}: {s['events']} events, {s['screened']} screened "
            f"(pass {results.get('pass', 0)}, recheck {results.get('recheck', 0)}, fever {results.get('fever', 0)}, "
            f"invalid {results.get('invalid', 0)}); scans {s['types'].get('scan', 0)}, "
            f"faults {s['types'].get('fault', 0)}, boots {s['types'].get('boot', 0)}; "
            f"kiosks online {kiosks.get('online', 0)}, offline {kiosks.get('offline', 0)}")
    return "\n".join(lines)
