"""p1evse: smart-meter grid power for OpenEVSE's solar divert."""

# Written here, not read from the installed package's metadata: importlib.metadata and
# what it imports cost 0.3 MB and a scan of site-packages at every start.
__version__ = "0.1.0"
