#!/usr/bin/env python3
"""tests/vm/qmp-link.py LOG SOCKET TIMEOUT - run.sh's host side of the guest's link checks.

Follows the guest console log; for each line "HOSTCMD: set_link ID off|on" it sends QEMU's
QMP `set_link` for that device (QEMU clears or sets the NIC's link bit as a cable would) and
reports the answer on stderr. Ends when QEMU closes the socket, or after TIMEOUT seconds.
"""
import json
import os
import re
import socket
import sys
import time

log_path, sock_path, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + timeout
CMD = re.compile(r"HOSTCMD: set_link (\S+) (off|on)")


def say(msg):
    print(f"HOST: qmp: {msg}", file=sys.stderr, flush=True)


s = None
while time.monotonic() < end and s is None:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
    except OSError:
        s = None
        time.sleep(0.2)
if s is None:
    say(f"no QMP socket at {sock_path}")
    sys.exit(1)
f = s.makefile("rw")


def reply():
    """The next QMP answer (events in between are skipped); None once QEMU is gone."""
    while True:
        line = f.readline()
        if not line:
            return None
        m = json.loads(line)
        if "return" in m or "error" in m or "QMP" in m:
            return m


def send(cmd, args=None):
    msg = {"execute": cmd}
    if args is not None:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\n")
    f.flush()
    return reply()


reply()  # the greeting
send("qmp_capabilities")
s.settimeout(None)
pos = 0
while time.monotonic() < end:
    try:
        with open(log_path, "rb") as lf:
            lf.seek(pos)
            chunk = lf.read()
        cut = chunk.rfind(b"\n") + 1  # whole lines only
        pos += cut
        lines = chunk[:cut].decode(errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        m = CMD.search(line)
        if m:
            r = send("set_link", {"name": m.group(1), "up": m.group(2) == "on"})
            if r is None:
                say("QEMU is gone")
                sys.exit(0)
            say(f"set_link {m.group(1)} {m.group(2)}: {json.dumps(r)}")
        if "GUEST: done" in line:
            sys.exit(0)
    # QEMU gone? (a closed socket reads EOF)
    s.setblocking(False)
    try:
        if s.recv(1, socket.MSG_PEEK) == b"":
            sys.exit(0)
    except BlockingIOError:
        pass
    except OSError:
        sys.exit(0)
    s.setblocking(True)
    time.sleep(0.2)
