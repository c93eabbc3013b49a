"""bench.remote, pure: the docker commands a fault runs against Compose containers, and the loopback guard."""

from __future__ import annotations


def test_docker_fault_commands_and_loopback_guard() -> None:
    from bench.remote import compose_container, docker_command, is_loopback

    assert compose_container(7000) == "redis-cluster-node-1" and compose_container(7005) == "redis-cluster-node-6"
    assert docker_command("kill", "redis-cluster-node-2") == [
        "docker",
        "kill",
        "--signal",
        "SIGKILL",
        "redis-cluster-node-2",
    ]
    assert docker_command("stop", "x") == ["docker", "pause", "x"] and docker_command("cont", "x") == [
        "docker",
        "unpause",
        "x",
    ]
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("10.1.2.3")
