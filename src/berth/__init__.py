"""berth: a container engine in Python, on Linux namespaces and cgroups."""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"

# the default roots (berth.paths), here so that a plain `berth exec`, which
# imports neither os nor the paths module, has them
DEFAULT_ROOT = "/var/lib/berth"
DEFAULT_STATE = "/run/berth"
DEFAULT_RUNTIME_ROOT = "/run/berth-runtime"
