"""tests/system_tools.require_binary: found binaries give their path; a missing one skips, or fails when CI is set."""

from __future__ import annotations

import shutil

import pytest

from tests.system_tools import require_binary

MISSING = "steerwarm-no-such-binary-xyz"


def test_found_binary_gives_its_path() -> None:
    assert require_binary("sh") == shutil.which("sh")


def test_missing_binary_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_binary(MISSING, "Debian package x")


def test_missing_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_binary(MISSING)
