"""Paths of the test suite. Import these from here, never ``from conftest import ...``: pytest also loads
tests/blender/conftest.py under the module name ``conftest``, so which one that name means depends on collection."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
