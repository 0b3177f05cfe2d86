"""Commands from the gateway (`cmd` channel) as pure logic: validation, expiry, at-most-once.

API:
    cmds = Commands(fs)                        # loads the handled-id journal from flash
    ack, action = cmds.handle(payload, now_ms) # payload: the raw bytes of a `cmd` message (or the
                                               # decoded dict); now_ms: UTC Unix ms, None if unsynced
    ack = cmds.finish(action, ok, detail)      # for an action with ack_first False, once done
    cmds.problem                               # None, or why the journal could not be read

What the app does with the pair:
    ack None,  action None  -> nothing to answer (no usable id to ack): count it, drop it
    ack given, action None  -> publish the ack (refused, expired, or a redelivery of a handled id)
    ack given, action given -> action.ack_first: publish the ack, wait for its PUBACK (bounded),
                               then perform the action (reboot: the ack must leave before we go)
    ack None,  action given -> perform the action, then publish cmds.finish(action, ok, detail)
                               (selftest, calibrate, snapshot: the ack carries the result)

Action: `.id`, `.name` ("reboot", "selftest", "calibrate", "snapshot"), `.args` (validated dict),
`.ack_first`. Verbs and their args:
    reboot    {}                        ack first ("rebooting"), then machine.reset()
    selftest  {}                        sensor, air sensor, scanner, flash, link; result in the ack
    calibrate {"reference_c": 30..45}   the blackbody's set temperature; the app measures it and
              (opt. "hold_s": 1..60)    stores the offset; the ack reports the offset
    snapshot  {}                        sends a thermal frame; the ack says where
    update    -> refused: "not supported yet" (signed updates come with the update issue)

At most once: every id that reaches a verb is written to the journal (cmds.json, bounded to
KEEP ids, tmp + rename) BEFORE the action is handed out. A second delivery of a known id (QoS 1
redelivery, a retained or queued copy after a reboot) gets the same ack again and no action - so a
redelivered `reboot` cannot loop. An action interrupted by a reset (no finish() recorded) is
answered on redelivery with ok=false "interrupted by a reboot" rather than run again.

Expiry: `expires` (UTC Unix ms) < now_ms -> ok=false "expired". Without a synced clock the
kiosk cannot tell, and accepts: the gateway should also set the MQTT message expiry interval,
which the broker enforces whatever the kiosk's clock says.
"""

import json

from kiosk import protocol

JOURNAL = "cmds.json"
KEEP = 32  # ids remembered; far more than a gateway redelivers
MAX_ARGS = 8

# verb -> (ack_first, {arg: (kind, lo, hi, required)})
VERBS = {
    "reboot": (True, {}),
    "selftest": (False, {}),
    "calibrate": (False, {"reference_c": ("num", 30.0, 45.0, True), "hold_s": ("int", 1, 60, False)}),
    "snapshot": (False, {}),
}
REFUSED = {"update": "not supported yet"}
_PENDING = "pending"


class Action:
    def __init__(self, cmd_id, name, args, ack_first):
        self.id = cmd_id
        self.name = name
        self.args = args
        self.ack_first = ack_first

    def __repr__(self):
        return "Action(%s %s)" % (self.name, self.id)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_args(name, args):
    """None if `args` suit verb `name`, else the reason."""
    spec = VERBS[name][1]
    if not isinstance(args, dict):
        return "args must be an object"
    for key in args:
        if key not in spec:
            return "unknown arg " + str(key)[:32] + " for " + name
    for key in spec:
        kind, lo, hi, required = spec[key]
        if key not in args:
            if required:
                return "missing arg " + key
            continue
        v = args[key]
        if kind == "int":
            ok = _is_int(v)
        else:
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and v == v
        if not ok:
            return "arg " + key + " must be " + ("an integer" if kind == "int" else "a number")
        if v < lo or v > hi:
            return "arg " + key + " outside " + str(lo) + ".." + str(hi)
    return None


class Commands:
    def __init__(self, fs, name=JOURNAL, keep=KEEP):
        self._fs = fs
        self._name = name
        self._keep = keep
        self._done = []  # [[id, ok, detail]], oldest first; ok None while pending
        self.problem = None
        self._load()

    # ---- journal ----------------------------------------------------------------------------
    def _load(self):
        try:
            with self._fs.open(self._name, "r") as f:
                data = json.loads(f.read())
        except OSError:
            return
        except ValueError:
            self.problem = self._name + " is corrupt; handled command ids forgotten"
            return
        if not isinstance(data, list):
            self.problem = self._name + " is not a list; handled command ids forgotten"
            return
        for row in data[-self._keep:]:
            if isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and isinstance(row[2], str):
                ok = row[1]
                if ok is None or row[2] == _PENDING:
                    # handed out but never finished: a reset came in between
                    ok, detail = False, "interrupted by a reboot"
                    self._done.append([row[0], ok, detail])
                elif isinstance(ok, bool):
                    self._done.append([row[0], ok, row[2]])

    def _save(self):
        tmp = self._name + ".tmp"
        with self._fs.open(tmp, "w") as f:
            f.write(json.dumps(self._done))
        self._fs.rename(tmp, self._name)

    def _record(self, cmd_id, ok, detail):
        for row in self._done:
            if row[0] == cmd_id:
                row[1] = ok
                row[2] = detail
                break
        else:
            self._done.append([cmd_id, ok, detail])
            if len(self._done) > self._keep:
                del self._done[0]
        self._save()

    def known(self, cmd_id):
        for row in self._done:
            if row[0] == cmd_id:
                return row
        return None

    # ---- handling ---------------------------------------------------------------------------
    def handle(self, payload, now_ms):
        """-> (ack body or None, Action or None); see the module docstring."""
        if isinstance(payload, (bytes, bytearray)):
            try:
                body = protocol.decode(payload)
            except protocol.ProtocolError:
                return None, None
        else:
            body = payload
        if not isinstance(body, dict):
            return None, None
        cmd_id = body.get("id")
        try:
            protocol.check_id(cmd_id, "id")
        except protocol.ProtocolError:
            return None, None  # nothing we could address an ack to
        row = self.known(cmd_id)
        if row is not None:
            if row[1] is None:
                return None, None  # still running; its finish() will answer
            return protocol.ack(cmd_id, row[1], row[2]), None
        reason = self._refusal(body, now_ms)
        if reason is not None:
            # Refusals are not journalled: a corrected command must use a new id anyway, and an
            # unknown verb must not push real commands out of the bounded journal.
            return protocol.ack(cmd_id, False, reason), None
        name = body["name"]
        ack_first, _ = VERBS[name]
        args = body.get("args") or {}
        action = Action(cmd_id, name, args, ack_first)
        if ack_first:
            detail = "rebooting" if name == "reboot" else "accepted"
            try:
                self._record(cmd_id, True, detail)
            except OSError:
                # Acting without the journal could loop a redelivered reboot: refuse instead.
                return protocol.ack(cmd_id, False, "flash: cannot record the command id"), None
            return protocol.ack(cmd_id, True, detail), action
        try:
            self._record(cmd_id, None, _PENDING)
        except OSError:
            return protocol.ack(cmd_id, False, "flash: cannot record the command id"), None
        return None, action

    def _refusal(self, body, now_ms):
        name = body.get("name")
        if not isinstance(name, str):
            return "missing or bad name"
        if name in REFUSED:
            return REFUSED[name]
        if name not in VERBS:
            return "unknown command " + name[:32]
        expires = body.get("expires")
        if not _is_int(expires) or expires < 0:
            return "expires must be UTC Unix milliseconds"
        if now_ms is not None and now_ms > expires:
            return "expired"
        args = body.get("args", {})
        if isinstance(args, dict) and len(args) > MAX_ARGS:
            return "too many args"
        return check_args(name, args)

    def finish(self, action, ok, detail):
        """Record the outcome of an action handed out with ack_first False -> its ack body."""
        detail = str(detail)[:200]
        ok = bool(ok)
        try:
            self._record(action.id, ok, detail)
        except OSError:
            pass  # the ack still goes out; a redelivery would then say "interrupted"
        return protocol.ack(action.id, ok, detail)
