# p1evse: a small image for amd64, arm64 and armv7 (see docs/deployment.md).
#
# The build stage installs p1evse into a venv with deploy/install.sh: the pinned, hash-checked
# requirements, then p1evse itself. On armv7 only, two of them have no wheel (cffi, which
# cryptography needs for encrypted meters, and PyYAML): that stage gets a C compiler there
# to build cffi, and PyYAML installs its pure-Python form. The image gets the venv alone.
FROM python:3.12-slim AS build

ENV PIP_NO_CACHE_DIR=1
RUN if [ "$(dpkg --print-architecture)" = armhf ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev libffi-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY pyproject.toml README.md /tmp/p1evse/
COPY src /tmp/p1evse/src
COPY deploy/install.sh deploy/requirements.txt /tmp/p1evse/deploy/
RUN python -m venv /opt/p1evse \
    && PATH=/opt/p1evse/bin:$PATH sh /tmp/p1evse/deploy/install.sh /tmp/p1evse

FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PATH=/opt/p1evse/bin:$PATH
COPY --from=build /opt/p1evse /opt/p1evse
# a user of its own; `dialout` may open a P1 cable passed with --device
RUN useradd --system --no-create-home --uid 10001 --groups dialout p1evse

USER p1evse
WORKDIR /config
EXPOSE 8080

# Health: `p1evse health` reads the config as `run` does and asks its /healthz on loopback.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD if [ -f /config/p1evse.yaml ]; then p1evse health -c /config/p1evse.yaml; else p1evse health; fi

# Configuration: P1EVSE_* environment variables, and /config/p1evse.yaml when mounted.
CMD ["sh", "-c", "if [ -f /config/p1evse.yaml ]; then exec p1evse run -c /config/p1evse.yaml; else exec p1evse run; fi"]
