"""The engine: containers as records, specs, lifecycle and their monitors.

Modules:

- `store.py`: container and volume records in the SQLite database (WAL);
  ids, names, lookup by id, name or id prefix.
- `options.py`: Docker's option values (sizes, env files, mounts, ulimits,
  restart policies) parsed into typed values; pure.
- `spec.py`: image config + options -> OCI config.json, as Docker builds it.
- `runtimes.py`: the OCI runtime the engine drives: berth's own library
  in-process, or any runc-compatible binary through its command line.
- `monitor.py`: the per-container monitor (conmon's role), run as its own
  lean interpreter: parent and subreaper of the container, holder of its
  stdio, writer of its json-file log, recorder of its exit, restarter.
- `containers.py`: the façade the CLI (and later the API) calls.
- `logs.py`, `template.py`, `volumes.py`, `names.py`: the rest.

Several `berth` processes may act at once: the database is the source of
truth, and lifecycle operations on one container are serialised by a flock on
its lock file.
"""
