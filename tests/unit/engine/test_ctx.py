"""berth.ctx: contextlib's suppress and ExitStack as the engine uses them."""

import pytest

from berth.ctx import ExitStack, suppress


def test_suppress_ignores_only_the_given_exceptions():
    with suppress(KeyError, OSError):
        raise FileNotFoundError("gone")
    with pytest.raises(ValueError), suppress(KeyError):
        raise ValueError("kept")
    with suppress(KeyError):
        pass


def test_exit_stack_runs_callbacks_last_first_on_error():
    done = []
    with pytest.raises(RuntimeError), ExitStack() as undo:
        undo.callback(done.append, 1)
        undo.callback(done.append, 2)
        raise RuntimeError("failed")
    assert done == [2, 1]


def test_exit_stack_pop_all_keeps_the_work():
    done = []
    with ExitStack() as undo:
        undo.callback(done.append, 1)
        undo.pop_all()
    assert done == []


def test_exit_stack_a_failing_callback_does_not_stop_the_others():
    done = []

    def fail() -> None:
        raise OSError("undo failed")

    with pytest.raises(OSError) as info, ExitStack() as undo:
        undo.callback(done.append, 1)
        undo.callback(fail)
        raise RuntimeError("failed")
    assert done == [1]
    assert isinstance(info.value.__context__, RuntimeError)
