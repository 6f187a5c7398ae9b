"""The allocator settings the command line applies (bayes_retail/_allocator.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bayes_retail import _allocator


def test_a_non_positive_threshold_is_refused():
    with pytest.raises(ValueError, match="threshold_bytes must be positive"):
        _allocator.keep_large_buffers(threshold_bytes=0)


def test_the_environment_variable_leaves_the_defaults(monkeypatch):
    monkeypatch.setenv(_allocator.ENVIRONMENT_VARIABLE, "System")
    called = []
    monkeypatch.setattr(_allocator, "_glibc_mallopt", lambda: called.append(1))
    assert _allocator.keep_large_buffers() is False
    assert not called


def test_every_setting_goes_to_mallopt_and_a_refusal_is_reported(monkeypatch):
    monkeypatch.delenv(_allocator.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    seen = []

    def mallopt(option, value):
        seen.append((option, value))
        return 0 if option == _allocator.M_ARENA_MAX else 1

    monkeypatch.setattr(_allocator, "_glibc_mallopt", lambda: mallopt)
    assert _allocator.keep_large_buffers(threshold_bytes=4096) is False
    assert seen == [(_allocator.M_MMAP_THRESHOLD, 4096), (_allocator.M_TRIM_THRESHOLD, 4096),
                    (_allocator.M_ARENA_MAX, 1)]


def test_without_glibc_nothing_is_set(monkeypatch):
    monkeypatch.delenv(_allocator.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(_allocator, "_glibc_mallopt", lambda: None)
    assert _allocator.keep_large_buffers() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or _allocator._glibc_mallopt() is None,
                    reason="glibc only")
def test_glibc_accepts_the_settings_in_a_fresh_process():
    code = "from bayes_retail._allocator import keep_large_buffers; print(keep_large_buffers())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PATH": "", "PYTHONPATH": ":".join(sys.path)})
    assert done.stdout.strip() == "True"
