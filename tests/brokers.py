"""Real MQTT brokers for tests, each in its own process on a free loopback port:
mosquitto when it is installed, and amqtt (pure Python) always."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from p1evse.sim.broker import free_port

START_TIMEOUT_S = 60.0  # a broker starts in well under a second on a quiet machine


class BrokerProcess:
    """A broker that can be stopped and started again on the same port."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        extra_config: str = "",
        config: Callable[[int], str] | None = None,
    ) -> None:
        """`config(port)`, for mosquitto: the whole mosquitto.conf instead of the tests'
        own (a config under test), which must log to stderr."""
        self.kind = kind
        self.port = free_port()
        self._workdir = workdir
        self._extra_config = extra_config
        self._config = config
        self._process: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    def _mosquitto_config(self) -> str:
        if self._config is not None:
            return self._config(self.port)
        return (
            f"listener {self.port} 127.0.0.1\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type information\n"
            "set_tcp_nodelay true\n"
            # as root mosquitto would switch to its own user, which cannot read
            # the test's password and certificate files
            f"user {getpass.getuser()}\n" + (self._extra_config or "allow_anonymous true\n")
        )

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            conf = self._workdir / f"mosquitto-{self.port}.conf"
            conf.write_text(self._mosquitto_config())
            mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            # mosquitto block-buffers its log into a pipe; line buffering lets start()
            # see "running" the moment it is written
            return ["stdbuf", "-oL", "-eL", mosquitto, "-c", str(conf)]
        return [sys.executable, "-u", "-m", "p1evse.sim.broker", str(self.port)]

    def start(self) -> None:
        ready = threading.Event()
        process = subprocess.Popen(
            self._command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._process = process

        def drain() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.log.append(line.rstrip())
                if " running" in line or "listening on" in line:
                    ready.set()
            ready.set()  # exited: let start() report it

        threading.Thread(target=drain, daemon=True, name=f"{self.kind}-log").start()
        if not ready.wait(START_TIMEOUT_S) or process.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.kind} did not start: {self.log[-5:]}")

    def kill(self) -> None:
        """Die as in a crash or power loss: no goodbyes to the clients."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


def mosquitto_available() -> bool:
    return shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
