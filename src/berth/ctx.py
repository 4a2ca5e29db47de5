"""contextlib's `suppress` and `ExitStack` as the engine uses them, without
contextlib: importing it brings collections, functools and types, ~5 ms of
a cold `berth run` on the reference VM (the container start's path imports
none of them; `array` and the `sqlite3` package would bring collections
back: see db.py and engine/spawn.py)."""


class suppress:
    """`with suppress(E1, E2): ...` ignores those exceptions (contextlib.suppress)."""

    __slots__ = ("excs",)

    def __init__(self, *excs: type[BaseException]) -> None:
        self.excs = excs

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, value: object, tb: object) -> bool:
        return typ is not None and issubclass(typ, self.excs)  # type: ignore[arg-type]


class ExitStack:
    """Callbacks run last-in first-out when the block ends, unless `pop_all`
    took them first (contextlib.ExitStack's callback and pop_all). A callback
    that raises does not stop the others; the last such error is raised, its
    context the block's own."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list = []

    def callback(self, fn, *args: object, **kwargs: object):
        self._callbacks.append((fn, args, kwargs))
        return fn

    def pop_all(self) -> "ExitStack":
        other = ExitStack()
        other._callbacks, self._callbacks = self._callbacks, []
        return other

    def close(self) -> None:
        self.__exit__(None, None, None)

    def __enter__(self) -> "ExitStack":
        return self

    def __exit__(self, typ: object, value: object, tb: object) -> bool:
        error = None
        while self._callbacks:
            fn, args, kwargs = self._callbacks.pop()
            try:
                fn(*args, **kwargs)
            except BaseException as exc:  # raised below, after the rest
                if error is not None and exc.__context__ is None:
                    exc.__context__ = error
                error = exc
        if error is not None:
            raise error
        return False
