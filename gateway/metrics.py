"""Prometheus text exposition (format 0.0.4) of the gateway's counters; no client library needed."""
from __future__ import annotations

import time
from typing import Callable

from gateway.ingest import LATENCY_BUCKETS_S, Ingest
from gateway.store import Queries


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self, ingest: Ingest | None, reader: Callable[[], Queries], offline_after_ms: int,
                 now_ms: Callable[[], int], extra: list[Callable[[], str]] | None = None) -> None:
        self.ingest = ingest
        self.reader = reader
        self.offline_after_ms = offline_after_ms
        self.now_ms = now_ms
        self.extra = extra if extra is not None else []  # e.g. the verdict responder's own text
        self._rate_prev: tuple[float, int] | None = None

    def render(self) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
                out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

        st = self.ingest.stats if self.ingest else None
        if st is not None and self.ingest is not None:
            metric("gateway_messages_received_total", "counter", "MQTT messages received", [({}, st.received)])
            metric("gateway_ingest_outcome_total", "counter", "Messages by what became of them",
                   [({"outcome": k}, v) for k, v in sorted(st.outcome.items())])
            metric("gateway_rejects_total", "counter", "Rejected messages by reason (since start)",
                   [({"reason": k}, v) for k, v in sorted(st.rejects.items())])
            now = time.monotonic()
            stored = st.outcome.get("stored", 0)
            rate = 0.0
            if self._rate_prev is not None and now > self._rate_prev[0]:
                rate = (stored - self._rate_prev[1]) / (now - self._rate_prev[0])
            else:
                rate = stored / max(1e-9, now - st.started_monotonic)
            self._rate_prev = (now, stored)
            metric("gateway_ingest_rate_events_per_second", "gauge", "Events stored per second since the last scrape",
                   [({}, round(rate, 3))])
            metric("gateway_writer_queue_depth", "gauge", "Messages waiting for the writer", [({}, self.ingest.queue_depth())])
            metric("gateway_outbound_inflight", "gauge", "Our publishes awaiting PUBACK", [({}, self.ingest.inflight())])
            metric("gateway_mqtt_connected", "gauge", "1 when connected to the broker", [({}, int(st.connected))])
            metric("gateway_ack_failures_total", "counter", "PUBACKs paho refused to send", [({}, st.ack_failures)])
            metric("gateway_store_errors_total", "counter", "Failed store writes", [({}, st.store_errors)])
            metric("gateway_publish_failures_total", "counter", "Publishes not queued, by why",
                   [({"why": k}, v) for k, v in sorted(st.publish_failures.items())])
            out.append("# HELP gateway_write_latency_seconds Batch commit time (fsync included)")
            out.append("# TYPE gateway_write_latency_seconds histogram")
            acc = 0
            for b, n in zip(LATENCY_BUCKETS_S, st.write_latency_buckets):
                acc += n
                out.append(f'gateway_write_latency_seconds_bucket{{le="{b}"}} {acc}')
            acc += st.write_latency_buckets[-1]
            out.append(f'gateway_write_latency_seconds_bucket{{le="+Inf"}} {acc}')
            out.append(f"gateway_write_latency_seconds_sum {st.write_latency_sum_s:.6f}")
            out.append(f"gateway_write_latency_seconds_count {st.write_latency_count}")
        with self.reader() as q:
            fleet = q.fleet(self.now_ms(), self.offline_after_ms)
            online: dict[str, int] = {}
            for k in fleet:
                online.setdefault(k["checkpoint"], 0)
                online[k["checkpoint"]] += int(k["online"])
            metric("gateway_kiosks_online", "gauge", "Kiosks online per checkpoint",
                   [({"checkpoint": cp}, n) for cp, n in sorted(online.items())])
            metric("gateway_kiosks_known", "gauge", "Kiosks known", [({}, len(fleet))])
            metric("gateway_rejects_stored_total", "counter", "Rejected messages by reason (all time)",
                   [({"reason": k}, v) for k, v in sorted(q.rejects().items())])
            open_alerts: dict[str, int] = {}
            for a in q.alerts(state="open", limit=100000):
                open_alerts[a["kind"]] = open_alerts.get(a["kind"], 0) + 1
            metric("gateway_alerts_open", "gauge", "Open alerts by kind",
                   [({"kind": k}, v) for k, v in sorted(open_alerts.items())])
        text = "\n".join(out) + "\n"
        for more in self.extra:
            text += more()
        return text


