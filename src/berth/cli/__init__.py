"""`berth`: the daemonless engine CLI. One thin adapter per command."""
