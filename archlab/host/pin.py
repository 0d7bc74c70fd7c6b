"""`python -m archlab.host.pin CPULIST -- COMMAND...`: run COMMAND pinned to CPULIST.

Sets this process's CPU affinity, then execs COMMAND in its place (same pid, same process
group), so the command and everything it forks start on those CPUs; no race with a child that
forks early, and no dependency on `taskset`.
"""

from __future__ import annotations

import os
import sys

from archlab.host.cpus import parse_cpu_list


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m archlab.host.pin CPULIST -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, parse_cpu_list(argv[0]))
    os.execvp(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
