"""The multiprocess variant: a PostgreSQL-style process family on one machine.

A supervisor (the "postmaster", `postmaster.py`) owns the listening socket and the shared
memory, starts one auxiliary process per stateful context (`auxiliary.py`: inventory, orders,
recommendations, notifications, each serving its real domain class over a Unix socket) and
forks N request backends (`backend.py`) that accept on the inherited socket. Read-mostly data
(the catalog) lives in one sealed shared-memory segment (`shmem.py`); everything else crosses
a process boundary as msgpack frames over Unix-domain sockets (`ipc.py`, `variants.rpc`).
Which processes restart when one dies is a per-role policy (`config.py`).
"""
