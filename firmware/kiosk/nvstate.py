"""Small persistent kiosk state on flash: epoch, boot counter, next event seq.

`epoch` is a random id made when this flash store is first created (a reflash or factory
reset makes a new one), so `(epoch, seq)` never repeats even if seq starts again from 0.
Writes go to a temporary file renamed over the old one: littlefs renames are atomic, so a
power cut leaves either the old or the new state, never half of one.
"""

import binascii
import json
import os

STATE_FILE = "state.json"


class NVState:
    def __init__(self, fs, name=STATE_FILE):
        self._fs = fs
        self._name = name
        self.epoch = None
        self.boot = 0
        self.next_seq = 0
        self.created = False

    def load(self):
        """Read the state, making a new epoch if there is none. Returns self."""
        try:
            with self._fs.open(self._name, "r") as f:
                data = json.loads(f.read())
            self.epoch = str(data["epoch"])
            self.boot = int(data["boot"])
            self.next_seq = int(data["next_seq"])
        except (OSError, ValueError, KeyError, TypeError):
            # No state, or a state we cannot trust: a new epoch keeps old seqs from colliding.
            self.epoch = binascii.hexlify(os.urandom(8)).decode()
            self.boot = 0
            self.next_seq = 0
            self.created = True
        return self

    def save(self):
        tmp = self._name + ".tmp"
        with self._fs.open(tmp, "w") as f:
            f.write(json.dumps({"epoch": self.epoch, "boot": self.boot, "next_seq": self.next_seq}))
        self._fs.rename(tmp, self._name)

    def count_boot(self):
        self.boot += 1
        self.save()
        return self.boot

    def take_seq(self):
        """The next event seq, persisted before it is used so it is never reused."""
        seq = self.next_seq
        self.next_seq = seq + 1
        self.save()
        return seq
