"""The distributed shop: one HTTP service per bounded context behind an API gateway.

What runs is a placement (`variants/placement.py`; by default `variants/placements/
distributed.toml`) whose every group but the edge is `http`: `topology.py` turns it into a
service per group, the edge group being the gateway; `service.py` is one service process
(also what the process family's postmaster runs for each of its `http` groups, through
`service.serve`); `http.py` is how services call each other; `launcher.py` runs them all on
one machine (`python -m variants.distributed --placement NAME|FILE`); `netns.py` puts each
in its own network namespace; `deploy/` generates the compose file, Kubernetes manifests and
Dockerfile from the same placement file.
"""
