"""`dataclass` and `field` for the record classes on a container start's
path, without importing dataclasses (which imports inspect, ast, dis and
tokenize: ~18 ms of a ~100 ms `berth run` on these machines).

The subset berth's records use: fields from class annotations (in order,
base classes' first), plain defaults and `field(default=...)` /
`field(default_factory=...)`, keyword `frozen` and `eq`; the class gets
__init__, __repr__, __eq__ and, frozen, __hash__ and a __setattr__ that
refuses, with dataclasses' semantics (an eq class that is not frozen is
unhashable). `__dataclass_fields__` is not set: dataclasses.asdict and
friends do not apply to these classes.
"""

_MISSING = object()


class _Field:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: object, default_factory: object) -> None:
        self.default = default
        self.default_factory = default_factory


def field(*, default: object = _MISSING, default_factory: object = _MISSING) -> object:
    return _Field(default, default_factory)


class FrozenInstanceError(AttributeError):
    pass


def dataclass(cls: type | None = None, /, *, frozen: bool = False, eq: bool = True):
    def wrap(c: type) -> type:
        return _process(c, frozen, eq)

    return wrap if cls is None else wrap(cls)


def _fields(cls: type) -> list[tuple[str, object, object]]:
    out: dict[str, tuple[str, object, object]] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, "__struct_fields__", ()):
            out[f[0]] = f
    # (inspect.get_annotations would import inspect, which this module avoids)
    for name, ann in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if isinstance(ann, str) and ann.startswith("ClassVar"):
            continue
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Field):
            f = (name, value.default, value.default_factory)
            if value.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value.default)
        else:
            f = (name, value, _MISSING)
        out[name] = f
    return list(out.values())


def _process(cls: type, frozen: bool, eq: bool) -> type:
    fields = _fields(cls)
    cls.__struct_fields__ = tuple(fields)  # type: ignore[attr-defined]
    names = [f[0] for f in fields]
    seen_default = False
    for name, default, factory in fields:
        if default is _MISSING and factory is _MISSING:
            if seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument")
        else:
            seen_default = True
    post_init = any("__post_init__" in b.__dict__ for b in cls.__mro__)
    setter = object.__setattr__
    count = len(fields)
    qualname = cls.__qualname__

    # one generic __init__ (no generated source: compiling one per class cost
    # ~3 ms of a container start)
    def __init__(self, *args, **kwargs) -> None:
        if len(args) > count:
            raise TypeError(f"{qualname}.__init__() takes {count + 1} positional arguments "
                            f"but {len(args) + 1} were given")
        for i, (name, default, factory) in enumerate(fields):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{qualname}.__init__() got multiple values for "
                                    f"argument {name!r}")
                value = args[i]
            elif name in kwargs:
                value = kwargs.pop(name)
            elif default is not _MISSING:
                value = default
            elif factory is not _MISSING:
                value = factory()  # type: ignore[operator]
            else:
                raise TypeError(f"{qualname}.__init__() missing required argument: {name!r}")
            setter(self, name, value)
        if kwargs:
            raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument "
                            f"{next(iter(kwargs))!r}")
        if post_init:
            self.__post_init__()

    __init__.__qualname__ = f"{qualname}.__init__"
    cls.__init__ = __init__  # type: ignore[misc]

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__qualname__}({inner})"

    if "__repr__" not in cls.__dict__:
        cls.__repr__ = __repr__  # type: ignore[method-assign]
    if eq and "__eq__" not in cls.__dict__:
        def __eq__(self, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        cls.__eq__ = __eq__  # type: ignore[method-assign]
    if frozen:
        def __setattr__(self, name: str, value: object) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        cls.__setattr__ = __setattr__  # type: ignore[method-assign]
        cls.__delattr__ = __delattr__  # type: ignore[method-assign]
        if eq and "__hash__" not in cls.__dict__:
            def __hash__(self) -> int:
                return hash(tuple(getattr(self, n) for n in names))

            cls.__hash__ = __hash__  # type: ignore[method-assign]
    elif eq and "__hash__" not in cls.__dict__:
        cls.__hash__ = None  # type: ignore[assignment]
    cls.__match_args__ = tuple(names)  # type: ignore[attr-defined]
    return cls
