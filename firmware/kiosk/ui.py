"""What the traveller and the operator see and hear: LED ring colour, buzzer pattern, display text.

Each kiosk state has one row below. The board gives three small outputs (the simulator records
them as timelines): `led(rgb)`, `tone(freq_hz)` (0 = silent) and `show(line1, line2)`.
"""

import asyncio

# state: (LED colour, buzzer pattern name, display line 1, line 2 in Chinese for travellers)
STATES = {
    "warming up": ((0, 0, 40), None, "Warming up", "设备预热中"),
    "ready": ((0, 0, 80), None, "Ready - step up", "请靠近测温"),
    "measuring": ((60, 60, 60), None, "Measuring...", "测温中 请稍候"),
    "pass": ((0, 120, 0), "ok", "Pass", "通过"),
    "recheck": ((160, 110, 0), "attention", "Recheck", "请复测"),
    "fever": ((200, 0, 0), "alarm", "Please wait", "请稍候 工作人员将复测"),
    "invalid": ((120, 0, 120), "attention", "Step closer", "请正对设备"),
    "manual check": ((160, 110, 0), "attention", "Show code to staff", "请出示健康码"),
    "manual screening": ((160, 60, 0), "attention", "Manual screening", "人工测温"),
    "records full": ((160, 60, 0), "attention", "Records full", "存储已满"),
    "offline": ((0, 0, 40), None, "Offline - screening", "离线 正常测温"),
}
# Patterns: (frequency Hz, duration ms) steps; a fever is loud and long so staff notice it.
PATTERNS = {
    "ok": ((2000, 80),),
    "attention": ((1500, 150), (0, 100), (1500, 150)),
    "alarm": ((2800, 300), (0, 150), (2800, 300), (0, 150), (2800, 300), (0, 150), (2800, 600)),
}
SHOW_TEMP = ("pass", "recheck", "fever")


class UI:
    def __init__(self, board):
        self._board = board
        self.state = None
        self._tone_task = None

    def set(self, state, temp_c=None):
        """Show `state` (a STATES key); same state again is a no-op, so a loop may call it freely."""
        if state == self.state:
            return
        row = STATES.get(state)
        if row is None:
            raise ValueError("unknown UI state " + str(state))
        self.state = state
        colour, pattern, line1, line2 = row
        if temp_c is not None and state in SHOW_TEMP:
            line1 = line1 + " " + ("%.1f" % temp_c) + " C"
        board = self._board
        board.led(colour)
        board.show(line1, line2)
        if self._tone_task is not None:
            self._tone_task.cancel()
            self._tone_task = None
            board.tone(0)
        if pattern is not None:
            self._tone_task = asyncio.create_task(self._play(PATTERNS[pattern]))

    async def _play(self, steps):
        board = self._board
        try:
            for freq, ms in steps:
                board.tone(freq)
                await asyncio.sleep(ms / 1000)
        finally:
            board.tone(0)
