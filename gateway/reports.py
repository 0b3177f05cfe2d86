"""The daily report per checkpoint: totals per lane and result, fevers with times and outcomes,
kiosk uptime and data gaps. Built from the counters and the day's few notable rows, written as
CSV and a printable HTML page, published on `_gateway/report`.

A day with traffic and no fever is still reported (`zero_report: true`); a checkpoint whose
kiosks sent nothing that day is flagged (`no_data: true`), never reported as a zero.
"""
from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from gateway.clock import LocalTime
from gateway.store import MANUAL_KIOSK, Queries
from kiosk import protocol

TOTAL_KEYS = ("screened", "pass", "recheck", "fever", "invalid", "manual", "manual:pass", "manual:fever",
              "manual:refused", "vehicles", "late", "lost")


def _periods(changes: list[tuple[int, str]], start: int, end: int) -> tuple[int, int, list[tuple[int, int]]]:
    """-> (online ms, known ms, offline periods) within [start, end) from state changes."""
    online = known = 0
    offline: list[tuple[int, int]] = []
    for i, (ts, state) in enumerate(changes):
        a = max(ts, start)
        b = min(changes[i + 1][0] if i + 1 < len(changes) else end, end)
        if b <= a:
            continue
        known += b - a
        if state == "online":
            online += b - a
        elif offline and offline[-1][1] == a:
            offline[-1] = (offline[-1][0], b)
        else:
            offline.append((a, b))
    return online, known, offline


def build(q: Queries, local: LocalTime, checkpoint: str, day: str, issued_ms: int,
          gap_min_ms: int = 600_000) -> dict[str, Any]:
    start, end = local.day_bounds(day)
    end_seen = min(end, issued_ms)
    totals: dict[str, int] = defaultdict(int)
    colors: dict[str, int] = defaultdict(int)
    lanes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kiosk_events: dict[str, int] = defaultdict(int)
    for r in q.agg_rows(checkpoint, day):
        metric, n = r["metric"], r["n"]
        if metric == "events" and r["kiosk"] != MANUAL_KIOSK:
            kiosk_events[r["kiosk"]] += n
        if metric.startswith("color:"):
            colors[metric[6:]] += n
        elif metric in TOTAL_KEYS or metric == "events":
            totals[metric] += n
            if metric in TOTAL_KEYS:
                lanes[f"{r['lane']}/{r['dir']}"][metric] += n
    fevers = []
    alerts = {a["id"]: a for a in q.alerts(checkpoint=checkpoint, limit=100000) if a["kind"] == "fever"
              and start <= a["ts_ms"] < end}
    for e in q.events_between(checkpoint, start, end, result="fever"):
        if e["type"] not in (protocol.SCREENING, protocol.MANUAL):
            continue
        a = alerts.get(f"fever:{e['checkpoint']}:{e['kiosk']}:{e['epoch']}:{e['seq']}")
        fevers.append({
            "time": local.format(e["ts_ms"]), "ts_ms": e["ts_ms"], "kiosk": e["kiosk"], "lane": e["lane"],
            "dir": e["dir"], "temp_c": e["temp_c"], "source": "manual" if e["type"] == protocol.MANUAL else "kiosk",
            "alert": a["id"] if a else None, "outcome": a["state"] if a else "no alert",
            "by": (a["resolved_by"] or a["ack_by"]) if a else None,
            "note": (a["resolve_note"] or a["ack_note"]) if a else None,
        })
    states = q.state_log(checkpoint, start, end)
    kiosks: dict[str, Any] = {}
    silent: list[dict[str, Any]] = []
    for kiosk in sorted(set(states) | set(kiosk_events)):
        online, known, offline = _periods(states.get(kiosk, []), start, end_seen)
        kiosks[kiosk] = {
            "events": kiosk_events.get(kiosk, 0),
            "uptime_pct": round(100.0 * online / known, 1) if known else None,
            "known_s": known // 1000,
            "offline": [{"from": local.format(a), "to": local.format(b), "minutes": round((b - a) / 60000, 1)}
                        for a, b in offline],
        }
        silent += [{"kiosk": kiosk, "from": local.format(a), "to": local.format(b), "minutes": round((b - a) / 60000, 1)}
                   for a, b in offline if b - a >= gap_min_ms]
    gaps = q.seq_gaps_between(checkpoint, start, end)
    no_data = not kiosk_events
    return {
        "v": protocol.VERSION, "checkpoint": checkpoint, "day": day, "version": 0, "timezone": local.zone_name,
        "issued_ms": issued_ms, "issued": local.format(issued_ms),
        "no_data": no_data, "zero_report": not no_data and totals.get("fever", 0) + totals.get("manual:fever", 0) == 0,
        "flag": "no kiosk of this checkpoint sent anything on this day" if no_data else None,
        "totals": {**{k: totals.get(k, 0) for k in TOTAL_KEYS}, "events": totals.get("events", 0),
                   "colors": dict(colors)},
        "lanes": {k: dict(v) for k, v in sorted(lanes.items())},
        "fevers": fevers,
        "kiosks": kiosks,
        "data_gaps": {"offline": silent,
                      "seq_gaps": [{"kiosk": g["kiosk"], "epoch": g["epoch"], "first": g["first"], "last": g["last"],
                                    "missing": g["missing"], "after": local.format(g["after_ts"])} for g in gaps],
                      "possibly_lost": sum(g["missing"] for g in gaps), "lost_reported": totals.get("lost", 0)},
        "late_events": totals.get("late", 0),
    }


def publishable(report: dict[str, Any]) -> bytes:
    """The MQTT form: the whole report if it fits the contract's payload limit, else trimmed
    (long fever and gap lists cut, with counts; the files and the HTTP API hold everything)."""
    try:
        return bytes(protocol.encode(protocol.validate(protocol.REPORT, dict(report))))
    except protocol.ProtocolError:
        pass
    small = dict(report)
    small["fevers_total"] = len(report["fevers"])
    small["fevers"] = report["fevers"][:20]
    gaps = dict(report["data_gaps"])
    gaps["seq_gaps"] = gaps["seq_gaps"][:20]
    gaps["offline"] = gaps["offline"][:20]
    small["data_gaps"] = gaps
    small["trimmed"] = True
    try:
        return bytes(protocol.encode(small))
    except protocol.ProtocolError:
        small["kiosks"] = {k: {"uptime_pct": v["uptime_pct"], "events": v["events"]} for k, v in report["kiosks"].items()}
        small["fevers"] = []
        gaps["seq_gaps"], gaps["offline"] = [], []
        return bytes(protocol.encode(small))


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["section", "name", "field", "value"])
    for key in ("checkpoint", "day", "version", "timezone", "issued", "no_data", "zero_report"):
        w.writerow(["report", "", key, report[key]])
    for key, value in report["totals"].items():
        if key == "colors":
            for color, n in value.items():
                w.writerow(["total", "", "color:" + color, n])
        else:
            w.writerow(["total", "", key, value])
    for lane, counts in report["lanes"].items():
        for key, n in counts.items():
            w.writerow(["lane", lane, key, n])
    for f in report["fevers"]:
        w.writerow(["fever", f["time"], "kiosk/lane/temp_c/source/outcome/by/note",
                    json.dumps([f["kiosk"], f"{f['lane']}/{f['dir']}", f["temp_c"], f["source"], f["outcome"], f["by"],
                                f["note"]], ensure_ascii=False)])
    for kiosk, k in report["kiosks"].items():
        w.writerow(["kiosk", kiosk, "uptime_pct", k["uptime_pct"]])
        w.writerow(["kiosk", kiosk, "events", k["events"]])
        for p in k["offline"]:
            w.writerow(["kiosk", kiosk, "offline", f"{p['from']} - {p['to']} ({p['minutes']} min)"])
    for g in report["data_gaps"]["seq_gaps"]:
        w.writerow(["seq_gap", f"{g['kiosk']}/{g['epoch']}", f"{g['first']}-{g['last']}", g["missing"]])
    w.writerow(["data_gaps", "", "possibly_lost", report["data_gaps"]["possibly_lost"]])
    w.writerow(["data_gaps", "", "lost_reported", report["data_gaps"]["lost_reported"]])
    w.writerow(["late", "", "late_events", report["late_events"]])
    return out.getvalue()


def to_html(report: dict[str, Any]) -> str:
    e = html.escape
    t = report["totals"]

    def table(head: list[str], rows: list[list[Any]]) -> str:
        if not rows:
            return "<p>none</p>"
        h = "".join(f"<th>{e(str(x))}</th>" for x in head)
        body = "".join("<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in r) + "</tr>" for r in rows)
        return f"<table><tr>{h}</tr>{body}</table>"

    status = ("NO DATA - " + e(report["flag"] or "")) if report["no_data"] else \
        ("Zero report: no fever" if report["zero_report"] else f"{t['fever'] + t['manual:fever']} fever(s)")
    keys = ["screened", "pass", "recheck", "fever", "invalid", "manual", "vehicles"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Daily report {e(report['checkpoint'])} {e(report['day'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #999;padding:2px 8px;text-align:left}.flag{color:#b00;font-weight:bold}"
        "@media print{body{margin:0}}</style></head><body>",
        f"<h1>Checkpoint {e(report['checkpoint'])} - {e(report['day'])}</h1>",
        f"<p>Version {report['version']}, issued {e(report['issued'])} ({e(report['timezone'])})</p>",
        f"<p class='{'flag' if report['no_data'] or not report['zero_report'] else ''}'>{status}</p>",
        "<h2>Totals</h2>", table(keys, [[t[k] for k in keys]]),
        "<h2>Per lane</h2>", table(["lane"] + keys, [[lane] + [c.get(k, 0) for k in keys]
                                                     for lane, c in report["lanes"].items()]),
        "<h2>Fevers</h2>", table(["time", "kiosk", "lane", "temp_c", "source", "outcome", "by", "note"],
                                 [[f["time"], f["kiosk"], f"{f['lane']}/{f['dir']}", f["temp_c"], f["source"],
                                   f["outcome"], f["by"] or "", f["note"] or ""] for f in report["fevers"]]),
        "<h2>Kiosks</h2>", table(["kiosk", "events", "uptime %", "offline"],
                                 [[k, v["events"], v["uptime_pct"] if v["uptime_pct"] is not None else "unknown",
                                   "; ".join(f"{p['from'][11:16]}-{p['to'][11:16]} ({p['minutes']} min)"
                                             for p in v["offline"])] for k, v in report["kiosks"].items()]),
        "<h2>Data gaps</h2>",
        table(["kiosk", "from", "to", "minutes"], [[g["kiosk"], g["from"], g["to"], g["minutes"]]
                                                   for g in report["data_gaps"]["offline"]]),
        table(["kiosk/epoch", "seq", "missing", "after"], [[f"{g['kiosk']}/{g['epoch']}", f"{g['first']}-{g['last']}",
                                                            g["missing"], g["after"]]
                                                           for g in report["data_gaps"]["seq_gaps"]]),
        f"<p>Records reported lost by kiosks: {report['data_gaps']['lost_reported']}; "
        f"late events: {report['late_events']}</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_files(report: dict[str, Any], directory: Path | str) -> tuple[Path, Path]:
    folder = Path(directory) / report["checkpoint"]
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{report['day']}.v{report['version']}"
    paths = (folder / f"{stem}.csv", folder / f"{stem}.html")
    for path, text in zip(paths, (to_csv(report), to_html(report))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return paths
