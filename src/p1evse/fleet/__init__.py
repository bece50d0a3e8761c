"""Fleets: many meters and chargers in one process, a `Site` each, keyed by a site id
that a `+` level of the source's topics captures.

`settings` holds what a fleet is configured with (its bounds, its shard), `port` a
site's view of the one broker connection, `fleet` the runtime that makes, routes and
lets go of the sites.
"""
