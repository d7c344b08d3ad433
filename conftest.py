"""Repository-wide pytest hooks; the tests' own fixtures are in tests/conftest.py.

This file sits at the root so that it also applies to the code blocks of
docs/*.md (run by pytest-markdown-docs, ``--markdown-docs`` in pyproject.toml).
"""

from __future__ import annotations

import contextlib

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Capture what a documentation code block prints, as for any other test.

    pytest-markdown-docs 0.9 runs each block inside
    ``capturemanager.global_and_fixture_disabled()``, so every tutorial's
    output went straight to the terminal, between the progress dots, even
    when the block passed (modal-labs/pytest-markdown-docs#54). While a block
    runs, that switch is a no-op here: its output is reported only when it
    fails (``-s`` or ``-rP`` still show it).
    """
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is None or type(item).__name__ != "MarkdownInlinePythonItem":
        return (yield)
    capman.global_and_fixture_disabled = contextlib.nullcontext  # shadows the method on this instance
    try:
        return (yield)
    finally:
        del capman.global_and_fixture_disabled
