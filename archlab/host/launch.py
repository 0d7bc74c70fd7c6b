"""`python -m archlab.host.launch PARENT_PID -- COMMAND...`: run COMMAND so it dies with its parent.

Every child the harness starts goes through here (`procs.start`). The kernel sends the child
SIGTERM when the harness thread that started it ends, which includes the harness being
SIGKILLed, OOM-killed or its terminal closed (PR_SET_PDEATHSIG, kept across exec), so a variant
or a load generator never outlives what started it and stops as it would on Ctrl-C. If the
parent is already gone, it exits at once. Then it execs COMMAND in its place: same pid, same
process group.
"""

from __future__ import annotations

import os
import signal
import sys

from variants.lifecycle import die_with_parent


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print(
            "usage: python -m archlab.host.launch PARENT_PID -- COMMAND [ARG...]", file=sys.stderr
        )
        return 2
    die_with_parent(int(argv[0]), signal.SIGTERM)
    os.execvp(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
