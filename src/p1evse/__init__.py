"""p1evse: smart-meter grid power for OpenEVSE's solar divert."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("p1evse")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"
