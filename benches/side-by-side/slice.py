#!/usr/bin/env python3
"""Sets the scheduler's time slice of threads, by thread id: `slice.py MICROSECONDS TID...`.

An experiment of the side-by-side bench (`BENCH_SLICE_US`, issue 17): since Linux 6.12 a thread
of the normal policy may ask for a shorter slice than the default (0.1 to 100 ms; `sched_setattr`
with `sched_runtime`), and a thread with a shorter slice than the one running is let in at once
when it wakes, instead of waiting for that one's slice to run out. Prints each thread's slice
before and after; exits non-zero if the kernel refused any.
"""

import ctypes
import sys

SYS_SCHED_SETATTR = 314  # x86_64
SYS_SCHED_GETATTR = 315


class SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("policy", ctypes.c_uint32),
        ("flags", ctypes.c_uint64),
        ("nice", ctypes.c_int32),
        ("priority", ctypes.c_uint32),
        ("runtime", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64),
        ("period", ctypes.c_uint64),
        ("util_min", ctypes.c_uint32),
        ("util_max", ctypes.c_uint32),
    ]


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    micros = int(sys.argv[1])
    failed = 0
    for tid in map(int, sys.argv[2:]):
        now = SchedAttr()
        if libc.syscall(SYS_SCHED_GETATTR, tid, ctypes.byref(now), ctypes.sizeof(now), 0) != 0:
            failed += 1
            continue
        # Keep the thread's policy and nice value; only the slice changes.
        want = SchedAttr(size=ctypes.sizeof(SchedAttr), policy=now.policy, nice=now.nice, runtime=micros * 1000)
        if libc.syscall(SYS_SCHED_SETATTR, tid, ctypes.byref(want), 0) != 0:
            print(f"{tid}: refused (errno {ctypes.get_errno()})", file=sys.stderr)
            failed += 1
            continue
        print(f"{tid}: slice {now.runtime / 1000:.0f} µs -> {micros} µs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
