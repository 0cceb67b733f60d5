#!/usr/bin/env python3
"""Who the gateway's request threads waited behind, from a scheduler trace of a bench phase.

Record the trace with the side-by-side bench (issue 17, session 17):

    BENCH_ONLY=aihub BENCH_PERF=c4 \
      BENCH_PERF_ARGS="-e sched:sched_switch -e sched:sched_wakeup -e sched:sched_wakeup_new \
                       -e sched:sched_migrate_task -c 1 -m 1024" benches/side-by-side/run.sh
    benches/side-by-side/waits.py .aihub/bench-side-by-side/perf-aihub-c4.data

For every time a request worker (`tokio-rt-worker`) was runnable but waited longer than
`--over` ms for a CPU, it adds up what ran on that CPU meanwhile, by thread name; PostgreSQL's
backends are named by their pool (`application_name`, from the `.backends` file the bench writes
beside the trace). It also prints the distribution of the workers' scheduling delays and how long
each pool's backends ran without a break.
"""

import argparse
import bisect
import collections
import re
import subprocess
import sys
from pathlib import Path


def switches(data: Path):
    """(end time s, cpu, task, sched delay ms, run ms) per switch-out, from `perf sched timehist`."""
    out = subprocess.run(
        ["perf", "sched", "timehist", "-i", str(data)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6 or not fields[1].startswith("["):
            continue
        try:
            end, cpu = float(fields[0]), int(fields[1].strip("[]"))
            delay, run = float(fields[-2]), float(fields[-1])
        except ValueError:
            continue
        rows.append((end, cpu, " ".join(fields[2:-3]), delay, run))
    return rows


def pools(data: Path):
    """Backend pid -> its pool's name (or its kind: walwriter, checkpointer ...)."""
    names = {}
    backends = data.with_suffix(".backends")
    if backends.exists():
        for line in backends.read_text().splitlines():
            parts = line.split("|")
            if len(parts) >= 3:
                names[parts[0]] = parts[1] or parts[2]
    return names


def who(task: str, names) -> str:
    base = re.sub(r"\[.*\]$", "", task)
    if base == "postgres":
        pid = re.search(r"\[(\d+)", task)
        return "postgres: " + names.get(pid.group(1) if pid else "", "other")
    return base


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="perf.data with sched_switch and sched_wakeup")
    parser.add_argument("--over", type=float, default=0.5, help="waits longer than this, ms")
    parser.add_argument("--task", default="tokio-rt-worker", help="the waiting threads' name")
    args = parser.parse_args()
    names = pools(args.data)
    rows = switches(args.data)
    if not rows:
        sys.exit(f"no scheduler switches in {args.data}: was it recorded with sched events?")
    by_cpu = collections.defaultdict(list)
    for row in rows:
        by_cpu[row[1]].append(row)
    starts = {cpu: [r[0] - r[4] / 1000 for r in rs] for cpu, rs in by_cpu.items()}

    delays = sorted(r[3] for r in rows if r[2].startswith(args.task))
    print(f"{args.task}: {len(delays)} runs; scheduling delay p50 {percentile(delays, .5):.3f}"
          f" p90 {percentile(delays, .9):.3f} p99 {percentile(delays, .99):.3f}"
          f" p99.9 {percentile(delays, .999):.3f} max {delays[-1]:.3f} ms")

    behind = collections.Counter()
    waits, waited = 0, 0.0
    for end, cpu, task, delay, run in rows:
        if not task.startswith(args.task) or delay <= args.over:
            continue
        waits, waited = waits + 1, waited + delay
        since, until = end - (run + delay) / 1000, end - run / 1000
        # Runs on this CPU that overlap [since, until]; a run is at most a few ms long.
        first = bisect.bisect_left(starts[cpu], since - 0.1)
        for other in by_cpu[cpu][first:]:
            begin = other[0] - other[4] / 1000
            if begin >= until:
                break
            overlap = min(other[0], until) - max(begin, since)
            if overlap > 0:
                behind[who(other[2], names)] += overlap * 1000
    print(f"\n{waits} waits over {args.over} ms, {waited:.1f} ms in all; what ran on that CPU meanwhile:")
    for name, ms in behind.most_common(15):
        print(f"  {name:36s} {ms:9.1f} ms  {ms / waited * 100:5.1f} %")

    print("\nPostgreSQL's backends: CPU, and the share of it in unbroken runs of 1 ms or more")
    ran = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    for _, _, task, _, run in rows:
        if task.startswith("postgres"):
            entry = ran[who(task, names)]
            entry[0] += run
            entry[1] += run if run >= 1 else 0
            entry[2] = max(entry[2], run)
    for name, (total, long, longest) in sorted(ran.items(), key=lambda kv: -kv[1][0])[:8]:
        print(f"  {name:36s} {total:9.1f} ms  {long / total * 100:5.1f} %  longest {longest:.2f} ms")


if __name__ == "__main__":
    main()
