"""The status page's settings: where it listens, its token, its limits."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field, SecretStr, field_validator, model_validator

from p1evse.settings import Section, host_and_port, secrets_from_files

# A token guards the page from the network; a short one is guessed in minutes.
MIN_TOKEN_CHARS = 16
# a DNS name: dot-separated labels of letters, digits and inner hyphens
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
# a name a Host header may carry: a Docker service's may have underscores
_HOST_NAME = re.compile(r"[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*")


def _is_host(host: str) -> bool:
    """An IP address (IPv6 in brackets, or bare) or a name that could resolve: anything
    else can never be listened on, which is a config error, not a reason to retry."""
    bracketed = host.startswith("[")
    address = host[1:-1] if bracketed and host.endswith("]") else host
    try:
        return ipaddress.ip_address(address).version == 6 or not bracketed
    except ValueError:
        return not bracketed and len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


class ListenAddress(NamedTuple):
    host: str  # to bind: an IPv6 literal without its brackets
    port: int

    @property
    def authority(self) -> str:
        """`host:port` as a URL has it: an IPv6 literal in brackets."""
        return host_and_port(self.host, self.port)


class WebSettings(Section):
    listen: str | None = "127.0.0.1:8080"
    token: SecretStr | None = None
    token_file: Path | None = None
    # names a page without a token answers to, besides localhost and IP addresses (the
    # machine's own name on the LAN; a reverse proxy's that passes its own Host on)
    hosts: list[str] = Field(default_factory=list, max_length=100)
    # A household's clients: a few phones and desktops (a live stream each, a few
    # connections while a page loads), Prometheus, Home Assistant, a health check.
    max_connections: int = Field(64, ge=2, le=10_000)
    max_streams: int = Field(16, ge=1, le=10_000)
    header_timeout: float = Field(10.0, gt=0, le=300)  # s to send a request's headers
    write_timeout: float = Field(5.0, gt=0, le=300)  # s a client may leave a write unread
    # a fleet's /metrics has series per site (label `site`) up to this many sites; beyond,
    # the fleet's totals only, so a scrape stays bounded
    site_metrics: int = Field(100, ge=0, le=100_000)

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        """Without the spaces around it, which no Authorization header can carry (a
        token file's last line ends in one)."""
        if token is None:
            return None
        text = token.get_secret_value().strip()
        if len(text) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"a token needs at least {MIN_TOKEN_CHARS} characters, this one has "
                f"{len(text)}: use a long random string, e.g. from `openssl rand -hex 16`"
            )
        return SecretStr(text)

    @field_validator("hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        names = [host.strip().rstrip(".").lower() for host in hosts]
        bad = [host for host in names if len(host) > 253 or not _HOST_NAME.fullmatch(host)]
        if bad:
            raise ValueError(f"expected host names such as p1evse.example.org, got {bad[0]!r}")
        return names

    @field_validator("listen", mode="before")
    @classmethod
    def _host_port(cls, listen: object) -> object:
        if listen is None or (isinstance(listen, str) and not listen.strip()):
            return None  # empty = off
        text = str(listen).strip() if isinstance(listen, str | int) else None
        if text is not None and text.isdigit():
            raise ValueError(
                f"expected host:port, got only a port: {text!r}; 127.0.0.1:{text} serves "
                f"this machine, 0.0.0.0:{text} the network (then set web.token)"
            )
        host, sep, port = (text or "").rpartition(":")
        if not sep or not _is_host(host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port such as 127.0.0.1:8080, got {listen!r}")
        return text

    @model_validator(mode="before")
    @classmethod
    def _token_from_file(cls, data: Any) -> Any:
        return secrets_from_files(data, "token")

    @model_validator(mode="after")
    def _streams_leave_room(self) -> WebSettings:
        if self.max_streams >= self.max_connections:
            raise ValueError(
                f"max_streams ({self.max_streams}) must be below max_connections "
                f"({self.max_connections}): every live page's stream is a connection, and "
                "/healthz and /metrics need one too"
            )
        return self

    @property
    def address(self) -> ListenAddress | None:
        """Where the page listens; None when it is off."""
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return ListenAddress(host.strip("[]"), int(port))
