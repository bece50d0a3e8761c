# p1evse: a small image for amd64, arm64 and armv7 (pure Python; see docs/deployment.md).
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

COPY pyproject.toml README.md /tmp/p1evse/
COPY src /tmp/p1evse/src
COPY deploy/install.sh deploy/requirements.txt /tmp/p1evse/deploy/
RUN sh /tmp/p1evse/deploy/install.sh /tmp/p1evse && rm -rf /tmp/p1evse \
    # a user of its own; `dialout` may open a P1 cable passed with --device
    && useradd --system --no-create-home --uid 10001 --groups dialout p1evse

USER p1evse
WORKDIR /config
EXPOSE 8080

# Health: `p1evse health` reads the config as `run` does and asks its /healthz on loopback.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD if [ -f /config/p1evse.yaml ]; then p1evse health -c /config/p1evse.yaml; else p1evse health; fi

# Configuration: P1EVSE_* environment variables, and /config/p1evse.yaml when mounted.
CMD ["sh", "-c", "if [ -f /config/p1evse.yaml ]; then exec p1evse run -c /config/p1evse.yaml; else exec p1evse run; fi"]
