"""The deployment files generated from a launcher placement (the distributed one by default).

The committed docker-compose.yml, k8s/*.yaml and Dockerfile must be exactly what
`variants/placements/distributed.toml` generates, and every service and every dependency of
the placement must appear in them; any other launcher placement file generates its own set.
Docker and Kubernetes are not needed: the files are parsed, not deployed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from variants import placement
from variants.distributed import deploy
from variants.distributed.deploy.__main__ import main as deploy_main
from variants.distributed.topology import load
from workloads.shop.dataset import CONTEXTS

TOPOLOGY = load()
PORT = TOPOLOGY.deployment.port


def _peers(args: list[str]) -> set[str]:
    return {args[i + 1].split("=")[0] for i, a in enumerate(args) if a == "--peer"}


def test_committed_files_are_what_the_placement_generates() -> None:
    stale = deploy.check(TOPOLOGY)
    assert not stale, f"regenerate with `python -m variants.distributed.deploy`: {stale}"


def test_generation_is_deterministic_and_writes_every_file(tmp_path: Path) -> None:
    written = deploy.write(TOPOLOGY, tmp_path)
    assert set(written) == set(deploy.generate(TOPOLOGY))
    assert deploy.check(TOPOLOGY, tmp_path) == []
    (tmp_path / "k8s" / "leftover.yaml").write_text("kind: Service\n")
    assert deploy.check(TOPOLOGY, tmp_path) == ["k8s/leftover.yaml"]


def test_a_service_per_http_group_and_the_edge_as_the_gateway() -> None:
    contexts = sorted(s.context for s in TOPOLOGY.services.values() if s.context)
    assert contexts == sorted(CONTEXTS)
    gateway = TOPOLOGY.gateway
    assert gateway.public and set(gateway.depends_on) == set(CONTEXTS)
    assert TOPOLOGY.levels()[-1] == [gateway.name]


def test_compose_has_every_service_dependency_and_healthcheck() -> None:
    doc = yaml.safe_load((deploy.DEPLOY_DIR / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == set(TOPOLOGY.services)
    for name, svc in TOPOLOGY.services.items():
        entry = services[name]
        assert set(entry.get("depends_on", {})) == set(svc.depends_on)
        assert all(
            d["condition"] == "service_healthy" for d in entry.get("depends_on", {}).values()
        )
        assert _peers(entry["command"]) == set(svc.depends_on)
        assert entry["command"][0] == name
        assert "/healthz" in " ".join(entry["healthcheck"]["test"])
        assert entry["restart"] == "unless-stopped"
        assert entry["deploy"]["replicas"] == svc.replicas
        reservations = entry["deploy"]["resources"]["reservations"]
        assert reservations["memory"] == f"{svc.memory_mib}M"
        assert ("volumes" in entry) == bool(svc.context)  # a database per context service
    assert services[TOPOLOGY.gateway.name]["ports"] == [
        f"127.0.0.1:{TOPOLOGY.deployment.public_port}:{PORT}"
    ]


def _k8s(name: str) -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((deploy.DEPLOY_DIR / "k8s" / f"{name}.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_k8s_has_a_deployment_and_a_service_per_service() -> None:
    kustomization = yaml.safe_load((deploy.DEPLOY_DIR / "k8s" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [f"{n}.yaml" for n in TOPOLOGY.services]
    for name, svc in TOPOLOGY.services.items():
        kinds = _k8s(name)
        expected = {"Deployment", "Service"} | (
            {"PersistentVolumeClaim"} if svc.stateful else set()
        )
        assert set(kinds) == expected
        spec = kinds["Deployment"]["spec"]
        assert spec["replicas"] == svc.replicas
        assert spec["strategy"]["type"] == ("Recreate" if svc.stateful else "RollingUpdate")
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] == {
            "cpu": f"{svc.cpu_m}m",
            "memory": f"{svc.memory_mib}Mi",
        }
        assert _peers(container["args"]) == set(svc.depends_on)
        waits = [a for c in pod.get("initContainers", []) for a in c["args"] if "://" in a]
        assert waits == [f"http://{d}:{PORT}/healthz" for d in svc.depends_on]
        service = kinds["Service"]["spec"]
        assert service["selector"] == spec["selector"]["matchLabels"]
        assert service["ports"][0]["port"] == PORT


def test_dockerfile_builds_the_service_image() -> None:
    text = (deploy.DEPLOY_DIR / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "variants.distributed.service"]' in text
    assert f"EXPOSE {PORT}" in text
    assert f"dataset.ensure('{TOPOLOGY.deployment.size}', {TOPOLOGY.deployment.seed})" in text


def test_the_image_carries_the_placements_the_services_read() -> None:
    copied = [
        line.split()[1]
        for line in deploy.dockerfile(TOPOLOGY).splitlines()
        if line.startswith("COPY ")
    ]
    root = deploy.REPO
    assert any(placement.PLACEMENTS_DIR.is_relative_to(root / c) for c in copied), copied
    assert any(deploy.DEPLOY_DIR.is_relative_to(root / c) for c in copied), copied  # its copies


def _custom(tmp_path: Path) -> Path:
    """The distributed placement with a slower recommendations deadline, as a file of its own."""
    text = (placement.PLACEMENTS_DIR / "distributed.toml").read_text()
    assert text.count("timeout_s = 1.0") == 1
    path = tmp_path / "slow-recs.toml"
    path.write_text(text.replace("timeout_s = 1.0", "timeout_s = 2.5"))
    return path


def test_any_launcher_placement_file_generates_files_that_read_a_copy_of_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    assert deploy_main(["--placement", str(_custom(tmp_path)), "--out", str(out)]) == 0
    topology = load(tmp_path / "slow-recs.toml")
    assert topology.services["recommendations"].timeout_s == 2.5
    assert deploy.check(topology, out) == []
    copy = out / "placement" / "slow-recs.toml"
    assert placement.load(copy).describe() == topology.placement.describe()
    compose = yaml.safe_load((out / "docker-compose.yml").read_text())
    in_image = f"{deploy.SRC}/variants/distributed/deploy/placement/slow-recs.toml"
    for name, entry in compose["services"].items():
        assert entry["command"][:3] == [name, "--placement", in_image]
    source = tmp_path / "slow-recs.toml"
    assert f"deploy --placement {source}`" in (out / "Dockerfile").read_text()
    assert copy.read_text() == source.read_text()
    (out / "placement" / "old.toml").write_text("")
    assert deploy.check(topology, out) == ["placement/old.toml"]


def test_the_default_placement_needs_no_placement_argument() -> None:
    for svc in TOPOLOGY.services.values():
        deployment = deploy.k8s_documents(TOPOLOGY, svc)[0]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "--placement" not in container["args"]
        assert "--placement" not in deploy.compose(TOPOLOGY)["services"][svc.name]["command"]


def test_a_placement_the_launcher_does_not_run_is_one_line_exit_2() -> None:
    for name in ("monolith", "multiprocess", "recs-service"):
        result = subprocess.run(
            [sys.executable, "-m", "variants.distributed.deploy", "--placement", name, "--check"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result
        assert f"placement {name} is run by the" in result.stderr
