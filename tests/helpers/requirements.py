"""System tools some tests need (an OpenSSH server, a JVM): required in CI, skipped with the exact reason elsewhere.

`.ci/run` installs them, so under CI=true a missing tool is a broken CI setup and fails loudly; on a developer's
fresh machine the README's test command still passes and says what was skipped and how to enable it.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(available: bool, what: str, install: str) -> None:
    if available:
        return
    message = f"{what} is missing; install it with `{install}` (.ci/run does) to run this test"
    if in_ci():
        pytest.fail(f"{message}. It is required under CI=true.")
    pytest.skip(message)
