"""The status page, /api/state, /metrics and /healthz (h11 and prometheus-client;
imported only when `web.listen` is set, so a service without it never loads them)."""
