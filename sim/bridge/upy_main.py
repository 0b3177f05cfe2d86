"""Entry of a MicroPython kiosk process: `micropython -m upy_main BRIDGE FS_ROOT [KIOSK]`.

BRIDGE is "host:port" or "unix:/path" of the simulator's bridge server, FS_ROOT the host folder
that is this board's flash (env KIOSK_BRIDGE / KIOSK_FS / KIOSK_NAME if not given). Builds a
BridgeBoard, runs the unmodified App(board) and reports its state to the simulator every
REPORT_S; when the simulator asks for a stop, lets the App say goodbye (App.stop) and exits 0.
Exit codes: 0 clean stop, 1 the App crashed, 3 the bridge went away, 75 board.reset().
"""

import asyncio
import io
import os
import sys

from kiosk.app import App
from upy_board import BridgeBoard

REPORT_S = 0.2


def _arg(i, env, default=None):
    if len(sys.argv) > i:
        return sys.argv[i]
    return os.getenv(env) or default


def _state(app):
    return {"outbox": app.outbox.depth(), "connected": bool(app.link.connected), "frames": app.frames,
            "ui": app.ui.state, "last_error": app.last_error}


async def supervise(app, board):
    run = asyncio.create_task(app.run())
    while not run.done():
        await asyncio.sleep(REPORT_S)
        control, drain_s = board.report(_state(app))
        if control == 1:
            await app.stop(drain_s)
            break
    try:
        await asyncio.wait_for(run, 5)
    except Exception:  # noqa: BLE001, S110 - cancelled or timed out: we are leaving anyway
        pass
    board.report(_state(app))


def main():
    address = _arg(1, "KIOSK_BRIDGE")
    root = _arg(2, "KIOSK_FS")
    if not address or not root:
        print("usage: micropython -m upy_main HOST:PORT|unix:PATH FS_ROOT [KIOSK]")
        sys.exit(2)
    board = BridgeBoard(address, root, _arg(3, "KIOSK_NAME", "kiosk"))
    try:
        app = App(board)
        asyncio.run(supervise(app, board))
    except Exception as err:  # noqa: BLE001 - tell the simulator why, then exit non-zero
        buf = io.StringIO()
        sys.print_exception(err, buf)
        text = buf.getvalue()
        print(text)
        board.log("crashed: " + text)
        board.bye(1)
        sys.exit(1)
    board.bye(0)


main()
