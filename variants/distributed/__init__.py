"""The distributed shop: one HTTP service per bounded context behind an API gateway.

`topology.py` reads the single topology file (`deploy/topology.toml`); `service.py` is one
service process; `http.py` is how services call each other; `launcher.py` runs them all on
one machine (`python -m variants.distributed`); `netns.py` puts each in its own network
namespace; `deploy/` generates the compose file, Kubernetes manifests and Dockerfile.
"""
