"""What a prefork supervisor does to the garbage collector around `fork()`: the `fork_gc` knob.

A child forked without exec shares its parent's heap copy-on-write, page by page, until either
process writes to a page. CPython writes to objects it only reads (reference counts) and, in
every collection, to the GC header of every tracked object of the generations collected (it
keeps `gc_refs` there), so the first full collection in a child copies every page that holds
a tracked object inherited from the parent, touched or not. The settings:

- `as-is`: nothing; the collector runs in parent and child as it would anyway.
- `freeze`: in the parent, `gc.collect()` then `gc.freeze()` right before the fork, so every
  object alive is in the permanent generation, which no collection in the child visits; the
  child's collector stays on for what the child allocates (what the process family has always
  done). The collection first frees what is garbage, so the frozen heap holds no garbage.
- `thresholds`: `freeze`, and in the child the collection thresholds raised to
  `RAISED_THRESHOLDS` (Instagram's recipe: fewer collections, so less GC CPU in the child).

What `freeze` cannot prevent: a child that reads an inherited object still writes its
reference count, so pages the child's requests touch are copied whatever the setting.
"""

from __future__ import annotations

import gc

AS_IS = "as-is"
FREEZE = "freeze"
THRESHOLDS = "thresholds"
SETTINGS = (AS_IS, FREEZE, THRESHOLDS)

RAISED_THRESHOLDS = (50_000, 20, 100)
"""(gen0, gen1, gen2) for `thresholds`, against CPython's (700, 10, 10). Under the lab's open
loop a monolith worker or a family backend made one young collection per 7 requests at 700
(129 in 884 requests: about 100 tracked objects per request outlive it), so 50,000 means one
per several hundred requests: the young collections' CPU (0.03-0.05 ms per request measured)
goes, for at most 50,000 young objects (a few MiB) held a little longer. gen1 x2 and gen2 x10
defer the middle and the full collections likewise (a full one walks every unfrozen object: the
model a monolith worker builds after the fork); CPython 3.11 also waits for a full collection
until a quarter of the long-lived objects are new."""


def check(setting: str) -> str:
    """`setting` if it is one of SETTINGS, else a ValueError naming them."""
    if setting not in SETTINGS:
        raise ValueError(f"fork_gc must be one of {', '.join(SETTINGS)}, got {setting!r}")
    return setting


def before_fork(setting: str) -> None:
    """In the parent, right before `os.fork()`."""
    if check(setting) != AS_IS:
        gc.collect()
        gc.freeze()


def in_child(setting: str) -> None:
    """In the child, first thing after `os.fork()`: the collector on, at the setting's
    thresholds (the parent's frozen objects stay frozen: the child never collects them)."""
    check(setting)
    gc.enable()
    if setting == THRESHOLDS:
        gc.set_threshold(*RAISED_THRESHOLDS)
