#!/usr/bin/env python3
"""Runs a command as one whole process; prints its wall time (s), peak RSS (KiB) and CPU time
(user + system, s).

CPU time comes from wait4, at microsecond resolution. Peak RSS comes from /usr/bin/time, which
runs the command: a process's peak RSS includes that of the process it was forked from (the
kernel keeps the parent's copy's high-water mark across exec), so it is read from the small
`time` process's child, not from this Python one's."""

import os
import sys
import tempfile
import time

with tempfile.NamedTemporaryFile(mode="r") as rss:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.execv("/usr/bin/time", ["/usr/bin/time", "-f", "%M", "-o", rss.name, *sys.argv[1:]])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{sys.argv[1:]} failed: {status}")
    peak = int(rss.read().split()[-1])
print(f"{wall:.4f} {peak} {usage.ru_utime + usage.ru_stime:.4f}")
