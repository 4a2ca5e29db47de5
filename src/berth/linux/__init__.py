"""The only place in berth that calls the kernel through ctypes.

Every binding keeps errno (`use_errno=True`) and raises
``OSError(errno, "<operation>: <strerror>", path)``. Constants keep their
kernel names and say which header they come from. No policy lives here.
"""
