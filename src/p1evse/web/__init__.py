"""The status page, /api/state, /metrics and /healthz (aiohttp; imported only when
`web.listen` is set, so a service without it never loads aiohttp)."""
