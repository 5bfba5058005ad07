"""Revision processes: the real service runs in its own network namespace on the container
port, crashes are reported as Cloud Run does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.cloud_run.processes import RevisionProcesses
from deployer_sandbox.common import rootfs
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.images import Image
from deployer_sandbox.common.netns import ContainerNetwork

from tests.processes import descendants, port_open

SERVICE_ENV = {"MONGODB_URL": "mongodb://db.invalid:27017/content", "SECRET_KEY": "s3cret"}


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def processes(tmp_path: Path, faults: Faults) -> Iterator[RevisionProcesses]:
    running = RevisionProcesses(tmp_path / "run", faults)
    yield running
    running.close()


@pytest.fixture
def service_image(repo_root: Path) -> Image:
    return Image(
        repository="europe-west1-docker.pkg.dev/p/r/content-api",
        digest="sha256:" + "0" * 64,
        context=repo_root / "service",
        cmd=("python", "-m", "app"),
        env={"APP_COMMIT": "abc1234"},
    )


@pytest.fixture
def echo_image(tmp_path: Path) -> Image:
    """A tiny HTTP server that answers with its own environment as JSON."""
    app = tmp_path / "echo"
    app.mkdir()
    (app / "server.py").write_text(
        textwrap.dedent(
            """
            import json, os
            from http.server import BaseHTTPRequestHandler, HTTPServer

            class Handler(BaseHTTPRequestHandler):
                def do_GET(self):
                    body = json.dumps(dict(os.environ)).encode()
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(body)

            print("listening", flush=True)
            HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
            """
        )
    )
    return Image("r/echo", "sha256:" + "1" * 64, app, ("python", "server.py"), {"BAKED": "yes"})


def _revision() -> str:
    return f"rev-{uuid.uuid4().hex[:8]}"


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        payload: dict[str, object] = json.loads(response.read())
        return payload


def _pid_gone(pid: int, within: float) -> bool:
    """Whether the process ends within `within` seconds (a zombie awaiting reaping counts)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def test_real_service_starts_and_answers_health(
    processes: RevisionProcesses, service_image: Image
) -> None:
    revision = _revision()
    env = {**SERVICE_ENV, "K_SERVICE": "content-api", "K_REVISION": revision}
    running = processes.start(revision, service_image, env)

    assert running.wait_ready(timeout=20) is None
    assert running.port == 8080  # Cloud Run's default container port
    assert running.url == f"http://127.0.0.1:{running.host_port}"
    assert _get(running.url + "/health") == {
        "status": "healthy",
        "service": "content-api",
        "version": {"commit": "abc1234", "revision": revision},
    }
    assert processes.get(revision) is running


def test_environment_is_minimal_base_plus_image_plus_revision(
    processes: RevisionProcesses, echo_image: Image
) -> None:
    os.environ["DEPLOYER_SECRET_THING"] = "must-not-leak"
    running = processes.start("env-rev", echo_image, {"K_REVISION": "env-rev", "BAKED": "over"})
    assert running.wait_ready(timeout=10) is None

    seen = _get(running.url)
    assert seen["PORT"] == "8080"
    assert seen["K_REVISION"] == "env-rev"
    assert seen["BAKED"] == "over"  # the revision's env wins over the image's
    assert "DEPLOYER_SECRET_THING" not in seen
    assert "PATH" in seen


def _texts(processes: RevisionProcesses, revision: str) -> list[str]:
    return [line.text for line in processes.logs(revision)]


def test_missing_variable_crashes_with_pydantic_message_in_the_logs_not_the_condition(
    processes: RevisionProcesses, service_image: Image
) -> None:
    revision = _revision()
    running = processes.start(revision, service_image, {"SECRET_KEY": "s3cret"})

    message = running.wait_ready(timeout=20)

    # Cloud Run's words only: the container's output is in Cloud Logging.
    assert message == (
        "The user-provided container failed to start and listen on the port defined provided "
        "by the PORT=8080 environment variable within the allocated timeout. This "
        "can happen when the container port is misconfigured or if the timeout is too short. "
        "The health check timeout can be extended. Logs for this revision might contain more "
        "information."
    )
    assert not running.alive()
    processes.stop(revision)  # as the launcher does: the process is gone, its logs are not
    assert processes.get(revision) is None
    lines = processes.logs(revision)
    texts = [line.text for line in lines]
    assert "mongodb_url" in texts
    assert any("Field required" in text for text in texts)
    assert "s3cret" not in "\n".join(texts)
    assert lines[-1].text == "Container called exit(1)." and lines[-1].system
    assert not any(line.system for line in lines[:-1])
    assert [line.timestamp for line in lines] == sorted(line.timestamp for line in lines)
    assert len({line.number for line in lines}) == len(lines)
    assert "Field required" in running.log_path.read_text()


def test_crash_fault_replaces_the_container(
    processes: RevisionProcesses, faults: Faults, echo_image: Image
) -> None:
    faults.arm("revision_crash", revision="doomed-rev")
    healthy = processes.start("other-rev", echo_image, {})
    doomed = processes.start("doomed-rev", echo_image, {})

    message = doomed.wait_ready(timeout=10)

    assert message is not None and "within the allocated timeout" in message
    assert doomed.last_log_lines(2) == [
        "sandbox fault: container crashed at start-up",
        "Container called exit(1).",
    ]
    assert _texts(processes, "doomed-rev") == doomed.last_log_lines(2)
    assert healthy.wait_ready(timeout=10) is None
    assert "sandbox fault: container crashed at start-up" not in _texts(processes, "other-rev")


def test_timeout_is_reported_and_the_output_so_far_is_logged(
    processes: RevisionProcesses, tmp_path: Path
) -> None:
    (tmp_path / "slow.py").write_text(
        "import time\nprint('warming up', flush=True)\ntime.sleep(60)\n"
    )
    image = Image("r/slow", "sha256:" + "2" * 64, tmp_path, ("python", "slow.py"))
    running = processes.start("slow-rev", image, {})

    message = running.wait_ready(timeout=1.0)

    assert message is not None
    assert "within the allocated timeout" in message
    assert "warming up" not in message
    assert _texts(processes, "slow-rev") == ["warming up"]
    assert running.alive()


def test_logs_of_a_revision_accumulate_across_restarts(
    processes: RevisionProcesses, faults: Faults, echo_image: Image
) -> None:
    faults.arm("revision_crash", revision="again-rev")
    assert processes.start("again-rev", echo_image, {}).wait_ready(timeout=10) is not None
    processes.stop("again-rev")

    assert processes.start("again-rev", echo_image, {}).wait_ready(timeout=10) is None

    assert _texts(processes, "again-rev") == [
        "sandbox fault: container crashed at start-up",
        "Container called exit(1).",
        "listening",
    ]
    assert processes.logs("never-started") == []


def test_stop_kills_the_process_and_frees_the_port(
    processes: RevisionProcesses, echo_image: Image
) -> None:
    running = processes.start("stop-rev", echo_image, {})
    assert running.wait_ready(timeout=10) is None

    processes.stop("stop-rev")

    assert not running.alive()
    assert _pid_gone(running.pid, within=3)
    assert not port_open(running.host_port, timeout=0.2)
    assert processes.get("stop-rev") is None


def test_close_stops_every_revision(processes: RevisionProcesses, echo_image: Image) -> None:
    started = [processes.start(f"close-{i}", echo_image, {}) for i in range(3)]
    for running in started:
        assert running.wait_ready(timeout=10) is None

    processes.close()
    processes.close()  # idempotent

    assert all(not running.alive() for running in started)
    assert all(_pid_gone(running.pid, within=3) for running in started)
    with pytest.raises(RuntimeError):
        processes.start("late", echo_image, {})


def test_children_die_when_the_sandbox_is_killed(tmp_path: Path, echo_image: Image) -> None:
    script = textwrap.dedent(
        f"""
        import threading, time
        from pathlib import Path
        from deployer_sandbox.common.faults import Faults
        from deployer_sandbox.common.images import Image
        from deployer_sandbox.cloud_run.processes import RevisionProcesses

        image = Image("r/echo", "sha256:" + "1" * 64, Path({str(echo_image.context)!r}),
                      ("python", "server.py"))
        processes = RevisionProcesses(Path({str(tmp_path / "orphan")!r}), Faults())
        # Started from a short-lived thread, as a gRPC handler would.
        result = []
        worker = threading.Thread(target=lambda: result.append(processes.start("r", image, {{}})))
        worker.start(); worker.join()
        assert result[0].wait_ready(10) is None
        print(result[0].pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert not _pid_gone(child_pid, within=0.3)  # the revision outlived its thread
        # Under its relay, the container's own process runs: it must die too.
        below = descendants(child_pid)
        assert below
    finally:
        parent.kill()
        parent.wait(timeout=5)
        if parent.stdout is not None:
            parent.stdout.close()

    assert _pid_gone(child_pid, within=5)
    assert all(_pid_gone(pid, within=5) for pid in below)


def test_without_namespaces_port_is_a_free_host_port(tmp_path: Path, echo_image: Image) -> None:
    processes = RevisionProcesses(tmp_path / "run", Faults(), ContainerNetwork(namespaces=False))
    try:
        running = processes.start("host-rev", echo_image, {}, container_port=8080)
        assert running.wait_ready(timeout=10) is None

        seen = _get(running.url)
    finally:
        processes.close()

    assert seen["PORT"] == str(running.port) == str(running.host_port)
    assert running.port != 8080


def test_a_built_image_runs_inside_its_tree_with_its_own_environment(
    processes: RevisionProcesses, tmp_path: Path
) -> None:
    if rootfs.unavailable() is not None or processes.network.unavailable is not None:
        pytest.skip(f"needs namespaces: {rootfs.unavailable() or processes.network.unavailable}")
    tree = tmp_path / "tree"
    (tree / "app").mkdir(parents=True)
    (tree / "app" / "server.py").write_text(
        textwrap.dedent(
            """
            import json, os
            from http.server import BaseHTTPRequestHandler, HTTPServer

            class Handler(BaseHTTPRequestHandler):
                def do_GET(self):
                    seen = {"cwd": os.getcwd(), "env": dict(os.environ),
                            "files": sorted(os.listdir("/app"))}
                    open("/app/written-at-runtime", "w").write("x")
                    body = json.dumps(seen).encode()
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(body)

            HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
            """
        )
    )
    image = Image(
        "r/built",
        "sha256:" + "3" * 64,
        tree,
        cmd=("server.py",),
        entrypoint=("python3",),
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "FROM_IMAGE": "1"},
        root=True,
        workdir="/app",
    )
    os.environ["DEPLOYER_SECRET_THING"] = "must-not-leak"
    running = processes.start("built-rev", image, {"K_REVISION": "built-rev"}, container_port=8000)
    assert running.wait_ready(timeout=15) is None

    seen = _get(running.url)
    processes.stop("built-rev")

    assert seen["cwd"] == "/app"
    assert seen["files"] == ["server.py"]
    env = seen["env"]
    assert isinstance(env, dict)
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"  # the image's, not the sandbox's
    assert env["PORT"] == "8000" and env["FROM_IMAGE"] == "1" and env["HOME"] == "/root"
    assert "DEPLOYER_SECRET_THING" not in env and "VIRTUAL_ENV" not in env
    assert sorted(p.name for p in (tree / "app").iterdir()) == ["server.py"]  # image unchanged
    assert list((tmp_path / "run" / "layers").iterdir()) == []  # its writable layer went too
