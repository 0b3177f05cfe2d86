"""python -m tools.monitor: watch a checkpoint broker's screening traffic, validated by the contract.

Every message under screening/# is printed on one line with its checkpoint, kiosk and channel, and
whether the contract accepts it (and why not). Raw codes in `verify` are never printed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk import protocol


def describe(topic: str, payload: bytes) -> str:
    try:
        checkpoint, kiosk, channel, body = protocol.parse_message(topic, payload)
    except protocol.ProtocolError as err:
        return f"REJECT {err.reason:<15} {topic} ({err.detail})"
    if channel == protocol.VERIFY:
        body = {**body, "raw": f"<{len(body['raw'])} chars hidden>"}
    return f"{checkpoint}/{kiosk} {channel:<9} {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--topic", default=protocol.ALL_VERSIONS, help="topic filter (default: %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="exit after this many messages (0: run until Ctrl-C)")
    parser.add_argument("--timeout", type=float, default=0, help="exit after this many seconds (0: never)")
    args = parser.parse_args(argv)

    seen = 0

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        nonlocal seen
        seen += 1
        print(time.strftime("%H:%M:%S"), "R" if msg.retain else " ", describe(msg.topic, msg.payload), flush=True)

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *_: print(f"monitor: watching {args.topic} on {args.host}:{args.port}", flush=True)
    client.on_connect = lambda c, *_: c.subscribe(args.topic, qos=1)
    try:
        client.connect(args.host, args.port)
    except OSError as err:
        print(f"monitor: cannot reach the broker at {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    client.loop_start()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while (not args.count or seen < args.count) and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    client.loop_stop()
    client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
