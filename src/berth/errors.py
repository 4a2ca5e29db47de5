"""One error hierarchy for all of berth, by category.

Every error raised on purpose by berth belongs to exactly one category; the
category decides the exit code of the `berth` CLI and the HTTP status of the
API, in one table each (here), never at the raise site::

    BerthError
     +-- NotFoundError            no such container, image, file ...
     +-- AlreadyExistsError       an id or name taken
     +-- ConflictError            the object is in the wrong state for this
     +-- InvalidArgumentError     bad input: config, flag, reference, layer
     +-- PermissionDeniedError    the kernel or a registry said no
     +-- UnavailableError         a peer, registry or kernel feature is missing
     +-- NotImplementedYetError   a valid request berth cannot serve yet
     +-- InternalError            a bug or an unexpected failure

Foreign exceptions (OSError, json errors ...) are translated at the boundary
that knows what was being done, with `raise XError(...) from exc`.

This module is imported on the runtime's start-up path: keep it free of
imports.
"""


class BerthError(Exception):
    """Base of every berth error. Messages are lower-case and name the
    operation and the object: ``mount proc on /x/rootfs/proc: permission denied``."""

    category = "internal"
    exit_code = 1
    http_status = 500

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def __getattr__(self, name: str) -> object:
        # carried data (path, container_id, digest, errno ...) read as attributes
        data = self.__dict__.get("data")
        if data is not None and name in data:
            return data[name]
        raise AttributeError(name)


class NotFoundError(BerthError):
    category = "not_found"
    exit_code = 3
    http_status = 404


class AlreadyExistsError(BerthError):
    category = "already_exists"
    exit_code = 4
    http_status = 409


class ConflictError(BerthError):
    category = "conflict"
    exit_code = 5
    http_status = 409


class InvalidArgumentError(BerthError):
    category = "invalid_argument"
    exit_code = 2
    http_status = 400


class PermissionDeniedError(BerthError):
    category = "permission_denied"
    exit_code = 6
    http_status = 403


class UnavailableError(BerthError):
    category = "unavailable"
    exit_code = 7
    http_status = 503


class NotImplementedYetError(BerthError):
    category = "not_implemented"
    exit_code = 8
    http_status = 501


class InternalError(BerthError):
    category = "internal"
    exit_code = 1
    http_status = 500


CATEGORIES: dict[str, type[BerthError]] = {
    cls.category: cls
    for cls in (
        NotFoundError,
        AlreadyExistsError,
        ConflictError,
        InvalidArgumentError,
        PermissionDeniedError,
        UnavailableError,
        NotImplementedYetError,
        InternalError,
    )
}


def from_oserror(exc: OSError, operation: str, obj: object = "") -> BerthError:
    """Translate an OSError raised while doing `operation` on `obj` into the
    berth category its errno belongs to, keeping errno and path as data."""
    import errno as _errno
    import os as _os

    code = exc.errno or 0
    reason = _os.strerror(code).lower() if code else str(exc)
    where = f" {obj}" if obj != "" else ""
    message = f"{operation}{where}: {reason}"
    cls: type[BerthError]
    if code in (_errno.ENOENT, _errno.ESRCH, _errno.ENODEV, _errno.ENXIO):
        cls = NotFoundError
    elif code == _errno.EEXIST:
        cls = AlreadyExistsError
    elif code in (_errno.EPERM, _errno.EACCES, _errno.EROFS):
        cls = PermissionDeniedError
    elif code in (
        _errno.EINVAL,
        _errno.ENOTDIR,
        _errno.EISDIR,
        _errno.ELOOP,
        _errno.ENAMETOOLONG,
        _errno.E2BIG,
    ):
        cls = InvalidArgumentError
    elif code in (_errno.EBUSY, _errno.ENOTEMPTY):
        cls = ConflictError
    elif code in (_errno.ENOSYS, _errno.EOPNOTSUPP):
        cls = UnavailableError
    else:
        cls = InternalError
    return cls(message, errno=code, path=str(obj) if obj != "" else None)
