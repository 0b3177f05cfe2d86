"""Durable store-and-forward queue of events waiting for their PUBACK, on the flash filesystem.

Layout (littlefs on the board; any fs with open/rename/remove/listdir, mkdir optional):

    outbox/00000007.seg   append-only segments of framed records (kiosk/record.py)
    outbox/00000008.seg   ... the newest one is the one being appended to
    outbox/cursor         where the first unacknowledged record is: seg u32, off u32,
                          refused u32, crc32 - replaced atomically (write .tmp, rename)

- append(body) frames one event (a CTX record first when epoch/boot/lane/dir/config_hash
  changed, and at the start of every segment) and appends it with one open/write/close, which
  on littlefs is one atomic commit: after a power cut the segment holds the record whole or
  not at all. On filesystems that can tear a write, the CRC finds the torn tail; recovery drops
  it and starts a new segment, so later records are never written after garbage.
- Only a small window of records (WINDOW) is held in RAM; the rest stays on flash and is read
  back as the link drains. RAM use does not grow with the backlog.
- ack(rid) releases a record. The cursor is saved every ACK_EVERY acks and before a fully
  acknowledged segment is deleted, so a power cut makes the kiosk resend at most ACK_EVERY +
  WINDOW events; the gateway de-duplicates on (epoch, seq).
- Budget: a new segment is started only if, after reserving its full size plus one block for
  littlefs' copy-on-write, at least RESERVE_PCT of the partition stays free (statvfs), and the
  segments stay within `max_bytes` (the only bound on filesystems without statvfs). When the
  budget is used up append() returns False and counts the event in `refused`, so the app can
  show "records full" and report the gap in seq with a `fault` carrying `lost`.
- telemetry is never queued: append() takes events only (ValueError otherwise).
- recover() (run by the constructor) rebuilds the queue from the cursor and the segments and
  never raises: unreadable records are counted in `corrupt` and skipped.

Wear: littlefs copies the partly written last block of a file on every append after a sync,
so one append costs one block erase plus up to a block of programming; spread over the
partition by littlefs' wear levelling this is ~40 erases per block per day at 17,280 events a
day on a 2 MiB partition (NOR flash is rated for 100,000).
"""

import struct

from kiosk import protocol, record

SEG_BYTES = 16368  # four 4 KiB littlefs blocks once the CTZ skip-list pointers are taken out
ACK_EVERY = 32
WINDOW = 16
RESERVE_PCT = 10
DEFAULT_MAX_BYTES = 1800000  # without statvfs: about 90% of a 2 MiB partition
TYPICAL_RECORD = 57  # framed screening event with a holder_ref (record.py)
_RELEASED_KEEP = 64

# window entry fields
_RID = 0
_BODY = 1
_SEG = 2
_START = 3
_END = 4
_ACKED = 5


class Outbox:
    def __init__(self, fs, path="outbox", seg_bytes=SEG_BYTES, max_bytes=None, reserve_pct=RESERVE_PCT,
                 ack_every=ACK_EVERY, window=WINDOW):
        self._fs = fs
        self._seg_bytes = seg_bytes
        self._reserve_pct = reserve_pct
        self._ack_every = ack_every
        self._window = max(window, 2)
        self._statvfs = getattr(fs, "statvfs", None)
        if max_bytes is None and self._statvfs is None:
            max_bytes = DEFAULT_MAX_BYTES
        self._max_bytes = max_bytes
        self._hdr = bytearray(record.HEADER)
        self._layout(path)
        self.refused = 0  # events we could not keep (full or flash error): explains gaps in seq
        self.errors = 0  # flash operations that failed
        self.corrupt = 0  # unreadable stretches skipped (torn tail, bad CRC)
        self.last_error = None
        self.recover()

    def _layout(self, path):
        # A directory of its own keeps segment churn out of the root's metadata (config,
        # state); filesystems without mkdir get prefixed names in the root instead.
        mkdir = getattr(self._fs, "mkdir", None)
        if mkdir is not None:
            try:
                mkdir(path)
            except OSError:
                pass
            try:
                self._fs.listdir(path)
                self._ls, self._lp, self._fp = path, "", path + "/"
                return
            except OSError:
                pass
        self._ls, self._lp, self._fp = "", path + "-", path + "-"

    def _name(self, seg):
        return self._fp + "%08d.seg" % seg

    # ---- public interface -------------------------------------------------------------------

    def append(self, body):
        """Keep one event durably. False (and refused += 1) when it could not be kept."""
        if not isinstance(body, dict) or body.get("type") not in protocol.EVENT_TYPES or "seq" not in body:
            raise ValueError("only events are queued")
        ctx = record.context(body)
        try:
            data = record.encode_event(body)
        except ValueError as err:
            return self._refuse("cannot encode event: " + str(err))
        roll = self._wsealed or self._wsize + len(data) > self._seg_bytes
        pre = None
        if roll or self._wctx is None or not record.same(ctx, self._wctx):
            pre = record.encode_ctx(ctx)
            if not roll and self._wsize + len(pre) + len(data) > self._seg_bytes:
                roll = True
        seg = self._wseg + 1 if roll else self._wseg
        if roll and not self._room():
            return self._refuse("outbox full")
        caught_up = self._at_tail()
        try:
            f = self._fs.open(self._name(seg), "ab")
            try:
                if pre is not None:
                    # One write, one commit: a CTX never lands without its first event.
                    pre.extend(data)
                    f.write(pre)
                else:
                    f.write(data)
            finally:
                f.close()
        except OSError as err:
            # Whatever reached the flash is suspect: never append after it again.
            if roll:
                self._segs.append([seg, 0])
                self._wseg = seg
                self._wsize = 0
            self._wsealed = True
            self.errors += 1
            return self._refuse("flash write failed: " + repr(err))
        if roll:
            self._segs.append([seg, 0])
            self._wseg = seg
            self._wsize = 0
            self._wsealed = False
        start = self._wsize + (len(pre) - len(data) if pre is not None else 0)
        self._wsize = start + len(data)
        self._segs[-1][1] = self._wsize
        self._wctx = ctx
        self._depth += 1
        self.last_seq = body["seq"]
        if caught_up and len(self._win) < self._window:
            self._win.append([self._rid(), body, seg, start, self._wsize, False])
            self._rseg, self._roff, self._rctx = seg, self._wsize, ctx
        return True

    def peek(self, n):
        """Up to n unacknowledged records, oldest first: [(rid, body)]."""
        if len(self._win) <= self._window // 2:
            self._fill()
        out = []
        for e in self._win:
            if not e[_ACKED]:
                out.append((e[_RID], e[_BODY]))
                if len(out) >= n:
                    break
        return out

    def ack(self, rid):
        """The broker has the record: release it. False for an unknown or released rid."""
        win = self._win
        for e in win:
            if e[_RID] == rid:
                if e[_ACKED]:
                    return False
                e[_ACKED] = True
                self._depth -= 1
                break
        else:
            return False
        released = self._released
        while win and win[0][_ACKED]:
            e = win.pop(0)
            released.append((e[_SEG], e[_START]))
            self._unsaved += 1
        if len(released) > _RELEASED_KEEP:
            del released[:len(released) - _RELEASED_KEEP]
        self._after_ack()
        return True

    def depth(self):
        return self._depth

    def replay(self, n):
        """Put the last n released records back (as a power cut before the ack was saved would)."""
        released = self._released
        k = min(n, len(released))
        if k <= 0:
            return 0
        first = self._segs[0][0] if self._segs else self._wseg + 1
        back = [p for p in released[len(released) - k:] if p[0] >= first]
        if not back:
            return 0
        seg, off = back[0]
        ctx = self._ctx_at(seg, off)
        if ctx is None:
            return 0
        reacked = 0
        for e in self._win:
            if e[_ACKED]:
                reacked += 1
        del released[len(released) - len(back):]
        self._win = []
        self._rseg, self._roff, self._rctx = seg, off, ctx
        self._depth += len(back) + reacked
        return len(back)

    @staticmethod
    def encode(body):
        return protocol.encode(body)

    def capacity(self):
        """Typical screening events the budget holds in all (queued ones included)."""
        return self._budget_bytes() // TYPICAL_RECORD

    def used_bytes(self):
        total = 0
        for s in self._segs:
            total += s[1]
        return total

    # ---- flash budget -----------------------------------------------------------------------

    def _budget_bytes(self):
        limit = None
        if self._statvfs is not None:
            try:
                st = self._statvfs(self._ls or "/")
                bsize, blocks, bfree = st[0], st[2], st[3]
                reserve = (blocks * self._reserve_pct + 99) // 100
                per_seg = (self._seg_bytes + bsize - 1) // bsize
                segs = (bfree - reserve - 1) // per_seg + len(self._segs)
                limit = max(segs, 0) * self._seg_bytes
            except OSError:
                limit = None
        if self._max_bytes is not None and (limit is None or self._max_bytes < limit):
            limit = self._max_bytes
        return limit if limit is not None else 0

    def _room(self):
        """Room for one more segment at its full size, keeping RESERVE_PCT free."""
        if self._max_bytes is not None and (len(self._segs) + 1) * self._seg_bytes > self._max_bytes:
            return False
        if self._statvfs is None:
            return True
        try:
            st = self._statvfs(self._ls or "/")
        except OSError as err:
            self.errors += 1
            self.last_error = "statvfs failed: " + repr(err)
            return False
        bsize, blocks, bfree = st[0], st[2], st[3]
        need = (self._seg_bytes + bsize - 1) // bsize + 1  # + littlefs' copy of the tail block
        reserve = (blocks * self._reserve_pct + 99) // 100
        return bfree - need >= reserve

    def _refuse(self, why):
        self.refused += 1
        self.last_error = why
        return False

    # ---- reading back ----------------------------------------------------------------------

    def _rid(self):
        self._next_rid += 1
        return self._next_rid

    def _at_tail(self):
        if self._rseg != self._wseg:
            return self._rseg > self._wseg
        return self._roff >= self._wsize

    def _size(self, seg):
        for s in self._segs:
            if s[0] == seg:
                return s[1]
        return 0

    def _normalise_reader(self):
        # Past the end of a finished segment: go on at the start of the next one.
        while self._rseg < self._wseg and self._roff >= self._size(self._rseg):
            nxt = None
            for s in self._segs:
                if s[0] > self._rseg:
                    nxt = s[0]
                    break
            if nxt is None:
                return
            self._rseg, self._roff, self._rctx = nxt, 0, None

    def _fill(self):
        """Read records from flash into the window, from the reader's position on."""
        while len(self._win) < self._window:
            self._normalise_reader()
            if self._at_tail():
                return
            seg = self._rseg
            end = self._size(seg)
            if self._roff >= end:
                return
            try:
                f = self._fs.open(self._name(seg), "rb")
            except OSError as err:
                self._lost_segment(seg, err)
                continue
            try:
                for pos, kind, payload, nxt in self._frames(f, self._roff, end):
                    self._roff = nxt
                    if kind == record.CTX:
                        try:
                            self._rctx = record.decode_ctx(payload)
                        except ValueError:
                            self.corrupt += 1
                        continue
                    if self._rctx is None:
                        self.corrupt += 1  # an event without its context (never counted)
                        continue
                    try:
                        body = record.decode_event(kind, payload, self._rctx)
                    except (ValueError, KeyError, IndexError, TypeError):
                        self.corrupt += 1
                        self._depth -= 1
                        continue
                    self._win.append([self._rid(), body, seg, pos, nxt, False])
                    if len(self._win) >= self._window:
                        break
                else:
                    self._roff = end
            except OSError as err:
                self._lost_segment(seg, err)
            finally:
                f.close()

    def _lost_segment(self, seg, err):
        # A segment we cannot open or read: count it and go past it rather than stall.
        self.errors += 1
        self.last_error = "segment " + str(seg) + " unreadable: " + repr(err)
        if seg == self._wseg:
            self._wsealed = True
            self._roff = self._wsize
        else:
            self._roff = self._size(seg)
        self._depth = self._count_from(self._rseg, self._roff) + self._win_unacked()

    def _win_unacked(self):
        n = 0
        for e in self._win:
            if not e[_ACKED]:
                n += 1
        return n

    def _count_from(self, seg, off):
        n = 0
        for s in self._segs:
            if s[0] < seg:
                continue
            n += self._scan(s[0], off if s[0] == seg else 0)[0]
        return n

    def _frame_at(self, f, pos, end):
        """(kind, payload, next) for a good frame at pos, None if there is none, or EOF."""
        hdr = self._hdr
        if end is not None and pos + record.OVERHEAD > end:
            return None
        f.seek(pos)
        got = f.readinto(hdr)
        if not got:
            return "eof"
        if got < record.HEADER:
            return None
        kind = hdr[0]
        n = hdr[1] | (hdr[2] << 8)
        if not record.valid_kind(kind) or n > record.MAX_PAYLOAD:
            return None
        if end is not None and pos + record.OVERHEAD + n > end:
            return None
        buf = bytearray(record.OVERHEAD + n)
        buf[:record.HEADER] = hdr
        got = f.readinto(memoryview(buf)[record.HEADER:])
        if got is None or got < n + record.TRAILER or not record.check(buf, n):
            return None
        return kind, memoryview(buf)[record.HEADER:record.HEADER + n], pos + record.OVERHEAD + n

    def _frames(self, f, pos, end):
        """Good frames from pos to end (None: to EOF), skipping bad stretches byte by byte."""
        while True:
            got = self._frame_at(f, pos, end)
            if got == "eof":
                return
            if got is None:
                if end is not None and pos + record.OVERHEAD > end:
                    return
                self.corrupt += 1
                self._torn = True
                pos += 1
                while True:
                    if end is not None and pos + record.OVERHEAD > end:
                        return
                    got = self._frame_at(f, pos, end)
                    if got is not None:
                        break
                    pos += 1
                if got == "eof":
                    return
            self._torn = False
            yield pos, got[0], got[1], got[2]
            pos = got[2]

    def _scan(self, seg, start, end=None):
        """Walk one segment: (events at/after start, ctx at start, ctx at end, valid end,
        torn tail, last event (kind, payload, ctx) or None)."""
        events = 0
        ctx = None
        ctx_start = None
        valid_end = 0
        last = None
        self._torn = False
        try:
            f = self._fs.open(self._name(seg), "rb")
        except OSError as err:
            self.errors += 1
            self.last_error = "segment " + str(seg) + " unreadable: " + repr(err)
            return 0, None, None, 0, True, None
        try:
            for pos, kind, payload, nxt in self._frames(f, 0, end):
                if pos >= start and ctx_start is None:
                    ctx_start = ctx
                if kind == record.CTX:
                    try:
                        ctx = record.decode_ctx(payload)
                    except ValueError:
                        self.corrupt += 1
                        ctx = None
                elif ctx is not None:
                    if pos >= start:
                        events += 1
                    last = (kind, payload, ctx)
                valid_end = nxt
        except OSError as err:
            self.errors += 1
            self.last_error = "segment " + str(seg) + " read failed: " + repr(err)
            self._torn = True
        finally:
            f.close()
        if ctx_start is None:
            ctx_start = ctx
        return events, ctx_start, ctx, valid_end, self._torn, last

    def _ctx_at(self, seg, off):
        got = self._scan(seg, off)
        if got[1] is None and off > 0:
            return None
        return got[1] if got[1] is not None else {}

    # ---- acknowledgements -------------------------------------------------------------------

    def _front(self):
        if self._win:
            e = self._win[0]
            return e[_SEG], e[_START]
        self._normalise_reader()
        return self._rseg, self._roff

    def _after_ack(self):
        seg, off = self._front()
        if self._segs and self._segs[0][0] < seg:
            # Segments before the front are fully acknowledged: save the cursor past them
            # first, then delete them (a cut in between leaves a segment recovery deletes).
            if self._save_cursor(seg, off):
                while self._segs and self._segs[0][0] < seg:
                    old = self._segs.pop(0)[0]
                    try:
                        self._fs.remove(self._name(old))
                    except OSError as err:
                        self.errors += 1
                        self.last_error = "cannot delete segment: " + repr(err)
            return
        if self._unsaved >= self._ack_every:
            self._save_cursor(seg, off)

    def _save_cursor(self, seg, off):
        data = bytearray(struct.pack("<III", seg, off, self.refused & 0xFFFFFFFF))
        data.extend(struct.pack("<I", record.crc32(data) & 0xFFFFFFFF))
        tmp = self._fp + "cursor.tmp"
        try:
            f = self._fs.open(tmp, "wb")
            try:
                f.write(data)
            finally:
                f.close()
            self._fs.rename(tmp, self._fp + "cursor")
        except OSError as err:
            self.errors += 1
            self.last_error = "cannot save ack cursor: " + repr(err)
            return False
        self._unsaved = 0
        return True

    def _load_cursor(self):
        try:
            f = self._fs.open(self._fp + "cursor", "rb")
            try:
                data = f.read(16)
            finally:
                f.close()
        except OSError:
            return None
        if data is None or len(data) != 16:
            return None
        seg, off, refused, crc = struct.unpack("<IIII", data)
        if record.crc32(data[:12]) & 0xFFFFFFFF != crc:
            self.corrupt += 1
            return None
        return seg, off, refused

    # ---- recovery ---------------------------------------------------------------------------

    def recover(self):
        """Rebuild the queue from flash (at boot). Never raises; problems are counted."""
        self._win = []
        self._released = []
        self._next_rid = 0
        self._unsaved = 0
        self._depth = 0
        self._segs = []  # [[number, valid size]], oldest first
        self._wseg = 0
        self._wsize = 0
        self._wctx = None
        self._wsealed = True
        self._rseg, self._roff, self._rctx = 1, 0, None
        self.last_seq = None
        try:
            self._recover()
        except Exception as err:  # noqa: BLE001 - a kiosk that cannot read its outbox still screens
            self.errors += 1
            self.last_error = "recovery failed: " + repr(err)
            # Keep what is on flash for a technician; carry on in fresh segments after it.
            top = self._wseg
            for s in self._segs:
                top = max(top, s[0])
            self._win = []
            self._depth = 0
            self._wseg, self._wsize, self._wctx, self._wsealed = top, 0, None, True
            self._rseg, self._roff, self._rctx = top + 1, 0, None

    def _recover(self):
        nums = []
        for name in self._fs.listdir(self._ls):
            if not name.startswith(self._lp):
                continue
            rest = name[len(self._lp):]
            if rest.endswith(".seg") and len(rest) == 12 and rest[:8].isdigit():
                nums.append(int(rest[:8]))
            elif rest == "cursor.tmp":
                try:
                    self._fs.remove(self._fp + rest)
                except OSError:
                    pass
        nums.sort()
        cursor = self._load_cursor()
        if cursor is None:
            cseg, coff = (nums[0] if nums else 1), 0
        else:
            cseg, coff, refused = cursor
            self.refused = refused
        for n in nums:
            if n < cseg:  # acknowledged; the cut came between saving the cursor and deleting it
                try:
                    self._fs.remove(self._name(n))
                except OSError:
                    pass
        nums = [n for n in nums if n >= cseg]
        if coff and cseg not in nums:
            # A cursor into a segment that is gone: a new segment of that number must be read
            # from its start, so say so on flash before anything is appended to it.
            coff = 0
            self._save_cursor(cseg, 0)
        last = None
        self._rseg, self._roff, self._rctx = cseg, coff, None
        for n in nums:
            start = coff if n == cseg else 0
            events, ctx_start, ctx_end, size, torn, last_ev = self._scan(n, start)
            self._segs.append([n, size])
            self._depth += events
            if n == cseg:
                if start > size:
                    self._roff = size
                else:
                    self._rctx = ctx_start
            if last_ev is not None:
                last = last_ev
            self._wseg, self._wsize, self._wctx = n, size, ctx_end
            self._wsealed = torn or size >= self._seg_bytes
        if not nums:
            self._wseg, self._wsize, self._wctx, self._wsealed = cseg - 1, 0, None, True
        if last is not None:
            try:
                self.last_seq = record.event_seq(last[0], last[1], last[2])
            except (ValueError, KeyError, IndexError):
                self.corrupt += 1
