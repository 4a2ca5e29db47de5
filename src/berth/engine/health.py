"""Docker's HEALTHCHECK, run by the monitor (see `Health`)."""

import os
import time

from berth.engine.logwriter import now_rfc3339

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from berth.engine.monitor import Monitor


class Health:
    """Docker's HEALTHCHECK: the test command run in the container every
    `interval` (the first after `interval`), failing after `timeout`; the
    container is unhealthy after `retries` failures in a row (failures
    during `start_period` do not count). The last 5 results are kept, as
    Docker's State.Health.Log. `on_failure` (berth's own) acts once the
    container turns unhealthy: none, kill, restart or stop."""

    def __init__(self, cfg: dict) -> None:
        self.test: list[str] = cfg["Test"]
        self.interval = cfg.get("Interval", 30e9) / 1e9
        self.timeout = cfg.get("Timeout", 30e9) / 1e9
        self.retries = cfg.get("Retries", 3)
        self.start_period = cfg.get("StartPeriod", 0) / 1e9
        self.on_failure = cfg.get("OnFailure", "none")
        self.state: dict = {}
        self.reported = ""
        self.next = 0.0
        self.started = 0.0

    def reset(self, mon: "Monitor") -> None:
        self.started = time.monotonic()
        self.next = self.started + self.interval
        self.state = {"Status": "starting", "FailingStreak": 0, "Log": []}
        mon.record(health=_json(self.state))
        mon.close_db()

    def due(self) -> float:
        return self.next - time.monotonic()

    def probe(self, mon: "Monitor") -> None:
        start = now_rfc3339()
        code, output = self.run(mon)
        end = now_rfc3339()
        self.next = time.monotonic() + self.interval
        st = self.state
        st["Log"] = [*st["Log"], {"Start": start, "End": end, "ExitCode": code,
                                  "Output": output}][-5:]
        if code == 0:
            st["Status"] = "healthy"
            st["FailingStreak"] = 0
        elif time.monotonic() - self.started >= self.start_period:
            st["FailingStreak"] += 1
            if st["FailingStreak"] >= self.retries:
                turned = st["Status"] != "unhealthy"
                st["Status"] = "unhealthy"
                if turned:
                    self.act(mon)
        mon.record(health=_json(st))
        if st["Status"] != self.reported:
            self.reported = st["Status"]
            mon.event(f"health_status: {st['Status']}")
        mon.close_db()

    def act(self, mon: "Monitor") -> None:
        if self.on_failure in ("kill", "restart", "stop"):
            mon.note(f"unhealthy: {self.on_failure}")
            if self.on_failure == "stop":
                mon.record(stop_requested=1)
            mon.record(reason=f"unhealthy:{self.on_failure}")
            try:
                mon.rt.kill(mon.cid, 9 if self.on_failure != "stop" else 15)
            except BaseException as exc:
                mon.note(f"unhealthy: kill: {exc}")

    def run(self, mon: "Monitor") -> tuple[int, str]:
        """Run the test in the container from a fork (the runtime's exec),
        its output captured (up to 4 KiB, as Docker), killed at the timeout."""
        if not self.test or self.test[0] == "NONE":
            return 0, ""
        args = self.test[1:]
        if self.test[0] == "CMD-SHELL":
            args = ["/bin/sh", "-c", " ".join(args)]
        import select

        from berth import jsonio

        proc_file = os.path.join(mon.bundle, "health.json")
        try:
            spec = jsonio.load_file(os.path.join(mon.bundle, "config.json"))
            proc = dict(spec["process"])  # type: ignore[index]
        except (OSError, ValueError, KeyError, TypeError):
            return -1, "health check: no container config"
        proc.update({"args": args, "terminal": False})
        with open(proc_file, "w") as f:
            f.write(jsonio.dumps(proc))
        r, w = os.pipe()
        helper = os.fork()
        if helper == 0:
            code = 1
            try:
                os.close(r)
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(w, 1)
                os.dup2(w, 2)
                code = mon.rt.exec(mon.cid, proc_file)
            except BaseException as exc:
                os.write(2, f"{getattr(exc, 'message', exc)}\n".encode())
                code = 126
            finally:
                os._exit(code & 0xFF)
        os.close(w)
        out = b""
        deadline = time.monotonic() + self.timeout
        timed_out = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            chunk = os.read(r, 4096)
            if not chunk:
                break
            out = (out + chunk)[:4096]
        os.close(r)
        if timed_out:
            try:
                os.kill(helper, 9)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(helper, 0)
        if timed_out:
            return -1, f"Health check exceeded timeout ({self.timeout:g}s)"
        return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def _json(obj: object) -> str:
    from berth import jsonio

    return jsonio.dumps(obj)
