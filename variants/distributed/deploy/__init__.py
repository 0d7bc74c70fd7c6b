"""Deployment files generated from a launcher placement: compose, Kubernetes, Dockerfile.

`generate(topology)` returns every file's text, keyed by its path relative to this folder;
`python -m variants.distributed.deploy [--placement NAME|FILE]` writes them (`--check` only
compares). The committed ones are generated from `variants/placements/distributed.toml`, so
that a user with Docker or a cluster needs nothing from this lab but the files, and a test
fails if they drift from it. The files belong in this folder: compose's build context and
the Dockerfile's path are relative to it.

The services in the image read the placement too: a named one from `variants/placements/`
(`--placement NAME`; nothing for the default, distributed), any other file from a copy
copied verbatim next to the generated files (`placement/<name>.toml`), which the image carries.

The mapping, per service (http group, and the edge as the gateway) of the placement:
- compose: a service with the shared image, its command line, `depends_on` with
  `condition: service_healthy`, a healthcheck on /healthz, `restart: unless-stopped` (the
  restart policy the local launcher imitates), CPU/memory reservations and limits, a volume
  for a stateful service's database, `deploy.replicas`;
- Kubernetes: a Deployment (readiness and startup probes on /healthz, resource requests and
  limits, an init container that waits for each dependency's /healthz, `Recreate` and a
  PersistentVolumeClaim for a stateful service) and a ClusterIP Service per service, plus a
  kustomization listing them;
- Dockerfile: the one image every service runs, with the dataset baked in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from variants import placement as placements
from variants.distributed.topology import DEFAULT_PLACEMENT, Service, Topology

DEPLOY_DIR = Path(__file__).resolve().parent
REPO = DEPLOY_DIR.parents[2]
REPO_FROM_DEPLOY = "../../.."  # compose's build context: the repository root
SRC = "/opt/archlab/src"  # the image's copy of the repository (its WORKDIR)
COPIED_PLACEMENT_DIR = "placement"
STATE = "/state"
UID = 10001
PART_OF = "archlab"


def _is_named(topology: Topology) -> bool:
    p = topology.placement
    return placements.named().get(p.name) == p.path


def _source(topology: Topology) -> str:
    """The placement file as the header names it: relative to the repository if inside it."""
    path = topology.placement.path
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _header(topology: Topology) -> str:
    how = "python -m variants.distributed.deploy"
    if not (_is_named(topology) and topology.placement.name == DEFAULT_PLACEMENT):
        how += f" --placement {_source(topology)}"
    return (
        f"# Generated from {_source(topology)} by\n"
        f"# `{how}`. Do not edit: edit the placement, regenerate.\n"
    )


def _copied_placement(topology: Topology) -> str | None:
    """Where a placement that is not a named one is copied, relative to the deploy folder."""
    if _is_named(topology):
        return None
    return f"{COPIED_PLACEMENT_DIR}/{topology.placement.path.name}"


def _placement_args(topology: Topology) -> list[str]:
    """How a service in the image finds the placement (nothing: the default)."""
    copied = _copied_placement(topology)
    if copied is not None:
        in_image = f"{SRC}/{DEPLOY_DIR.relative_to(REPO)}/{copied}"
        return ["--placement", in_image]
    name = topology.placement.name
    return [] if name == DEFAULT_PLACEMENT else ["--placement", name]


def _command(topology: Topology, svc: Service) -> list[str]:
    """The service's arguments to the image's entry point (`python -m ...service`)."""
    dep = topology.deployment
    args = [svc.name, *_placement_args(topology), "--host", "0.0.0.0", "--port", str(dep.port)]
    args += ["--state-dir", STATE, "--size", dep.size, "--seed", str(dep.seed)]
    args += ["--threads", str(dep.threads), "--workers", "1"]
    for peer in svc.depends_on:
        args += ["--peer", f"{peer}=http://{peer}:{dep.port}"]
    return args


def _health_probe(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}/healthz"
    code = (
        "import sys, urllib.request; "
        f"sys.exit(urllib.request.urlopen('{url}', timeout=2).status != 200)"
    )
    return ["CMD", "python", "-c", code]


def compose(topology: Topology) -> dict[str, Any]:
    dep = topology.deployment
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    for svc in topology.services.values():
        entry: dict[str, Any] = {
            "image": dep.image,
            "build": {
                "context": REPO_FROM_DEPLOY,
                "dockerfile": "variants/distributed/deploy/Dockerfile",
            },
            "command": _command(topology, svc),
            "restart": "unless-stopped",
            "healthcheck": {
                "test": _health_probe(dep.port),
                "interval": "5s",
                "timeout": "3s",
                "retries": 3,
                "start_period": "180s",
            },
            "deploy": {
                "replicas": svc.replicas,
                "resources": {
                    "reservations": {
                        "cpus": f"{svc.cpu_m / 1000:g}",
                        "memory": f"{svc.memory_mib}M",
                    },
                    "limits": {
                        "cpus": f"{svc.cpu_limit_m / 1000:g}",
                        "memory": f"{svc.memory_limit_mib}M",
                    },
                },
            },
        }
        if svc.depends_on:
            entry["depends_on"] = {d: {"condition": "service_healthy"} for d in svc.depends_on}
        if svc.public:
            entry["ports"] = [f"127.0.0.1:{dep.public_port}:{dep.port}"]
        if svc.context:
            volume = f"{svc.name}-state"
            entry["volumes"] = [f"{volume}:{STATE}"]
            volumes[volume] = {}
        services[svc.name] = entry
    return {"name": PART_OF, "services": services, "volumes": volumes}


def _labels(svc: Service) -> dict[str, str]:
    return {"app.kubernetes.io/name": svc.name, "app.kubernetes.io/part-of": PART_OF}


def k8s_documents(topology: Topology, svc: Service) -> list[dict[str, Any]]:
    """A Deployment and a Service (and a PersistentVolumeClaim if stateful) for `svc`."""
    dep = topology.deployment
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    container: dict[str, Any] = {
        "name": svc.name,
        "image": dep.image,
        "args": _command(topology, svc),
        "ports": [{"name": "http", "containerPort": dep.port}],
        "readinessProbe": {**probe, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2},
        "startupProbe": {**probe, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 60},
        "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3},
        "resources": {
            "requests": {"cpu": f"{svc.cpu_m}m", "memory": f"{svc.memory_mib}Mi"},
            "limits": {"cpu": f"{svc.cpu_limit_m}m", "memory": f"{svc.memory_limit_mib}Mi"},
        },
        "volumeMounts": [{"name": "state", "mountPath": STATE}],
    }
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "runAsNonRoot": True,
        },
        "containers": [container],
        "volumes": [
            {"name": "state", "persistentVolumeClaim": {"claimName": f"{svc.name}-state"}}
            if svc.stateful
            else {"name": "state", "emptyDir": {}}
        ],
    }
    if svc.depends_on:
        waits: list[str] = []
        for peer in svc.depends_on:
            waits += ["--wait-for", f"http://{peer}:{dep.port}/healthz"]
        pod["initContainers"] = [
            {"name": "wait-for-dependencies", "image": dep.image, "args": waits}
        ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": svc.name, "labels": _labels(svc)},
        "spec": {
            "replicas": svc.replicas,
            # One writer per SQLite file: never two pods of a stateful service at once.
            "strategy": {"type": "Recreate" if svc.stateful else "RollingUpdate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": svc.name}},
            "template": {"metadata": {"labels": _labels(svc)}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "labels": _labels(svc)},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": svc.name},
            "ports": [{"name": "http", "port": dep.port, "targetPort": "http"}],
        },
    }
    docs = [deployment, service]
    if svc.stateful:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"{svc.name}-state", "labels": _labels(svc)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
    return docs


def dockerfile(topology: Topology) -> str:
    dep = topology.deployment
    return f"""{_header(topology)}#
# The one image every service runs: `docker build -f variants/distributed/deploy/Dockerfile .`
# from the repository root. The dataset ({dep.size}, seed {dep.seed}) is built into the image, so a
# service copies its own database from it into {STATE} at first start.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ARCHLAB_DATA=/opt/archlab/datasets
WORKDIR {SRC}
COPY pyproject.toml README.md ./
COPY archlab/ archlab/
COPY workloads/ workloads/
COPY variants/ variants/
RUN pip install --no-cache-dir -e . \\
 && python -c "from workloads.shop import dataset; dataset.ensure('{dep.size}', {dep.seed})" \\
 && useradd --uid {UID} --no-create-home archlab \\
 && mkdir {STATE} && chown archlab {STATE}
USER {UID}
VOLUME {STATE}
EXPOSE {dep.port}
ENTRYPOINT ["python", "-m", "variants.distributed.service"]
"""


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors/aliases for shared sub-documents (a probe used three times)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _yaml(topology: Topology, docs: list[dict[str, Any]]) -> str:
    text = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, width=1000)
    return _header(topology) + text


def generate(topology: Topology) -> dict[str, str]:
    """Every generated file's text, keyed by its path relative to the deploy folder."""
    files = {
        "Dockerfile": dockerfile(topology),
        "docker-compose.yml": _yaml(topology, [compose(topology)]),
    }
    names = []
    for svc in topology.services.values():
        files[f"k8s/{svc.name}.yaml"] = _yaml(topology, k8s_documents(topology, svc))
        names.append(f"{svc.name}.yaml")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "labels": [{"pairs": {"app.kubernetes.io/part-of": PART_OF}}],
        "resources": names,
    }
    files["k8s/kustomization.yaml"] = _yaml(topology, [kustomization])
    copied = _copied_placement(topology)
    if copied is not None:
        files[copied] = topology.placement.path.read_text()
    return files


def check(topology: Topology, folder: Path = DEPLOY_DIR) -> list[str]:
    """Paths that differ from what the topology generates: changed, missing or left over."""
    files = generate(topology)
    stale = [
        rel
        for rel, text in files.items()
        if not (folder / rel).exists() or (folder / rel).read_text() != text
    ]
    extra = [
        rel
        for pattern in ("k8s/*.yaml", f"{COPIED_PLACEMENT_DIR}/*.toml")
        for p in sorted(folder.glob(pattern))
        if (rel := str(p.relative_to(folder))) not in files
    ]
    return stale + extra


def write(topology: Topology, folder: Path = DEPLOY_DIR) -> list[str]:
    written = []
    for rel, text in generate(topology).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(rel)
    return written


__all__ = ["DEPLOY_DIR", "check", "generate", "write"]
