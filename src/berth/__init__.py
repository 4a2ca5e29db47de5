"""berth: a container engine in Python, on Linux namespaces and cgroups."""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"
