"""Small persistent kiosk state on flash: epoch, boot counter, event seq high-water mark.

`epoch` is a random id made when this flash store is first created (a reflash or factory
reset makes a new one), so `(epoch, seq)` never repeats even if seq starts again from 0.
Writes go to a temporary file renamed over the old one: littlefs renames are atomic, so a
power cut leaves either the old or the new state, never half of one.

seq without a flash write per event: the file holds `seq_hw`, a number no seq handed out so
far has reached. take_seq() hands out seqs below it from RAM and, when it runs out, first
saves seq_hw + SEQ_BLOCK - one small write per SEQ_BLOCK events. After a power cut the kiosk
goes on at seq_hw, so a seq that was handed out but whose record never reached the flash (cut
mid-write, or refused because the outbox was full) is never given to another event. The cost
is a gap of at most SEQ_BLOCK - 1 seqs after an unclean reboot; `skipped` says which, so the
app can report them. release() (clean shutdown) saves the exact next seq: no gap.
"""

import binascii
import json
import os

STATE_FILE = "state.json"
SEQ_BLOCK = 32


class NVState:
    def __init__(self, fs, name=STATE_FILE, seq_block=SEQ_BLOCK):
        self._fs = fs
        self._name = name
        self._block = seq_block
        self.epoch = None
        self.boot = 0
        self.next_seq = 0
        self.seq_hw = 0
        self.created = False
        self.skipped = None  # (first, last) seqs reserved before the last boot and never used
        self.saves = 0

    def load(self):
        """Read the state, making a new epoch if there is none. Returns self."""
        try:
            with self._fs.open(self._name, "r") as f:
                data = json.loads(f.read())
            epoch = str(data["epoch"])
            boot = int(data["boot"])
            # "next_seq": the foundation's per-event format, read once when upgrading.
            hw = int(data["seq_hw"] if "seq_hw" in data else data["next_seq"])
            self.epoch, self.boot, self.seq_hw = epoch, boot, hw
            self.next_seq = hw
        except (OSError, ValueError, KeyError, TypeError):
            # No state, or a state we cannot trust: a new epoch keeps old seqs from colliding.
            self.epoch = binascii.hexlify(os.urandom(8)).decode()
            self.boot = 0
            self.next_seq = 0
            self.seq_hw = 0
            self.created = True
        return self

    def resume(self, last_seq):
        """After the outbox is recovered: never go below a seq found on flash. Sets `skipped`."""
        if last_seq is not None and last_seq + 1 > self.next_seq:
            self.next_seq = last_seq + 1  # only with a state older than its outbox
        if last_seq is not None and last_seq + 1 < self.next_seq:
            self.skipped = (last_seq + 1, self.next_seq - 1)
        else:
            self.skipped = None
        return self.next_seq

    def save(self):
        tmp = self._name + ".tmp"
        with self._fs.open(tmp, "w") as f:
            f.write(json.dumps({"epoch": self.epoch, "boot": self.boot, "seq_hw": self.seq_hw}))
        self._fs.rename(tmp, self._name)
        self.saves += 1

    def count_boot(self):
        self.boot += 1
        self.save()
        return self.boot

    def take_seq(self):
        """The next event seq; never reused, even after a power cut (see the module doc)."""
        seq = self.next_seq
        if seq >= self.seq_hw:
            self.seq_hw = seq + self._block
            self.save()  # before the seq is used: raises OSError rather than risk reuse
        self.next_seq = seq + 1
        return seq

    def release(self):
        """Clean shutdown: give back the unused reservation so the next boot has no gap."""
        if self.seq_hw != self.next_seq:
            self.seq_hw = self.next_seq
            self.save()
