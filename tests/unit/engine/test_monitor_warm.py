"""The zygote's warm-up of the attribute lookups its monitors make
(monitor.warm_type_cache): memory only, so it must never fail, and the
names it assumes must still be the monitor's."""

from berth.engine import monitor


def test_warm_type_cache_runs() -> None:
    monitor.warm_type_cache()
    monitor.warm_type_cache()  # twice: nothing kept that a second run trips on


def test_served_names_are_what_serve_sets() -> None:
    # the attributes serve's start helper hands the monitor (its `st` dict's
    # keys are constants of _first_start), and those serve sets itself
    consts = monitor._first_start.__code__.co_consts
    keys = {c for c in consts if isinstance(c, str)}
    keys |= {k for c in consts if isinstance(c, tuple) for k in c if isinstance(k, str)}
    keys |= set(monitor.serve.__code__.co_names)  # mon.log, mon.diag ... set by serve
    assert set(monitor._SERVED) <= keys
