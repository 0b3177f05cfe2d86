# boot.py - runs first after every reset; kept tiny and kept as .py on the board.
#
# 1. A short window in which a technician's Ctrl-C reaches the REPL before anything (the
#    watchdog above all) is started: a kiosk can always be recovered over USB serial.
# 2. Fast-reboot guard: a counter on flash counts boots; main.py clears it once the kiosk has run
#    for a minute. Three boots in a row without that -> safe mode (link and REPL, no screening),
#    so a crash loop cannot hide the kiosk from its technician.
import time

CTRL_C_WINDOW_S = 3
FAST_BOOTS_FILE = "fastboots"
SAFE_AFTER = 3

print("kiosk: press Ctrl-C within %d s for the REPL" % CTRL_C_WINDOW_S)
time.sleep(CTRL_C_WINDOW_S)

try:
    with open(FAST_BOOTS_FILE) as f:
        fast_boots = int(f.read() or "0")
except (OSError, ValueError):
    fast_boots = 0
fast_boots += 1
try:
    with open(FAST_BOOTS_FILE, "w") as f:
        f.write(str(fast_boots))
except OSError:
    pass  # a full or broken flash must not stop the boot; main.py reports flash faults
SAFE_MODE = fast_boots > SAFE_AFTER
if SAFE_MODE:
    print("kiosk: %d fast reboots in a row: safe mode (no screening)" % (fast_boots - 1))
