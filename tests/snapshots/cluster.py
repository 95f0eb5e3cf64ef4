"""A real Spark standalone cluster for tests: a master and workers as separate JVMs, started from the
PySpark install's ``spark-class``; a worker can be given a private view of a folder (``unshare
--mount`` with a tmpfs over it, as root), as a real cluster's executors have disks of their own.

``python -m tests.snapshots.cluster`` starts one (a shared and a private worker) and waits, for
trying builds by hand.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from tests.helpers import free_port

SPARK_HOME = Path(pyspark.__file__).parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"


def can_unshare() -> bool:
    """Private mounts need root (or a user namespace) and util-linux's unshare."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env |= {
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(folder / "logs"),
        "SPARK_NO_DAEMONIZE": "1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_DAEMON_JAVA_OPTS": "-XX:TieredStopAtLevel=1",
    }
    return env


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    private: Path | None


@dataclass
class Cluster:
    folder: Path
    port: int = field(default_factory=free_port)
    master: subprocess.Popen[bytes] | None = None
    workers: dict[str, Worker] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _log(self, name: str) -> int:
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        return os.open(self.folder / "logs" / f"{name}.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def start(self) -> Cluster:
        log = self._log("master")
        self.master = subprocess.Popen(
            [
                *(str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--webui-port", str(free_port())),
            ],
            env=_env(self.folder),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        os.close(log)
        self._wait_port(self.port, "the master")
        return self

    def add_worker(self, name: str, *, private: Path | None = None, cores: int = 1) -> Worker:
        """A worker; with ``private``, its JVM (and every executor it starts) sees its own empty
        tmpfs at that path instead of the folder everyone else sees."""
        work = self.folder / f"work-{name}"
        work.mkdir(parents=True, exist_ok=True)
        if private is not None:
            private.mkdir(parents=True, exist_ok=True)
        log = self._log(f"worker-{name}")
        process = subprocess.Popen(
            self._worker_command(name, private, cores, work),
            env=_env(self.folder),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        os.close(log)
        worker = Worker(name, process, private)
        self.workers[name] = worker
        self._wait_registered(name)
        return worker

    def _worker_command(self, name: str, private: Path | None, cores: int, work: Path) -> list[str]:
        java = [str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", self.url]
        java += ["--host", "127.0.0.1", "--cores", str(cores), "--memory", "1g"]
        java += ["--work-dir", str(work), "--webui-port", str(free_port())]
        if private is None:
            return java
        script = 'mount -t tmpfs -o size=256m consentgate-private "$1" && shift && exec "$@"'
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(private),
            *java,
        ]

    def _wait_port(self, port: int, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{what} did not start within {timeout:.0f} s (see {self.folder / 'logs'})")

    def _wait_registered(self, name: str, timeout: float = 60) -> None:
        """Until the master's log says the worker registered."""
        deadline = time.monotonic() + timeout
        log = self.folder / "logs" / f"worker-{name}.out"
        while time.monotonic() < deadline:
            if log.exists() and "Successfully registered with master" in log.read_text(errors="replace"):
                return
            worker = self.workers[name].process
            if worker.poll() is not None:
                raise RuntimeError(
                    f"worker {name} exited with {worker.returncode}: {log.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        raise RuntimeError(f"worker {name} did not register within {timeout:.0f} s (see {log})")

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and every executor it started (its process group)."""
        worker = self.workers.pop(name)
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.workers):
            self.kill_worker(name)
        if self.master is not None:
            os.killpg(self.master.pid, signal.SIGKILL)
            self.master.wait(timeout=30)
            self.master = None


def main() -> None:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="consentgate-cluster-"))
    cluster = Cluster(folder).start()
    cluster.add_worker("shared")
    if can_unshare():
        cluster.add_worker("private", private=folder / "private-out")
    print(f"master {cluster.url}; private OUT {folder / 'private-out'}; logs {folder / 'logs'}")
    try:
        signal.pause()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
