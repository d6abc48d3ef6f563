"""Which exceptions the command line turns into ``error: <message>`` (exit 1) and which keep their traceback."""

from __future__ import annotations

import pytest

from openmm_tensornet.app.cli import _is_user_error


def _failed_import(module: str) -> ImportError:
    try:
        __import__(module)
    except ImportError as error:
        return error
    raise AssertionError(f"{module} imported")


@pytest.mark.parametrize("error, user", [
    (ValueError("bad charge"), True),
    (FileNotFoundError("x.pdb does not exist"), True),
    (_failed_import("a_package_nobody_installed"), True),  # missing dependency: say which
    (ImportError("torch 2.14 does not match the ops' ABI; install torch 2.9.1"), True),  # raised on purpose
    (_failed_import("openmm_tensornet.no_such_module"), False),  # our own broken import: a bug, keep the traceback
    (RuntimeError("internal"), False),
    (KeyError("x"), False),
])
def test_user_errors_and_bugs_are_told_apart(error, user):
    assert _is_user_error(error) is user
