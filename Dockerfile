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

# Health: the status server's /healthz, asked on loopback inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 CMD \
    python -c "import os, urllib.request; port = (os.environ.get('P1EVSE_WEB__LISTEN') or '127.0.0.1:8080').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"

# Configuration: P1EVSE_* environment variables, and /config/p1evse.yaml when mounted.
CMD ["sh", "-c", "if [ -f /config/p1evse.yaml ]; then exec p1evse run -c /config/p1evse.yaml; else exec p1evse run; fi"]
