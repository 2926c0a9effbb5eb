"""Shared fixtures: synthetic checkpoints in the official layouts, built once per test session."""

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
for path in (str(TESTS), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Directory factory: ``checkpoints("midas_v2")`` -> Path of the synthetic seed-0 file (written once)."""
    from synthetic_weights import write_checkpoint

    directory = tmp_path_factory.mktemp("weights")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = write_checkpoint(name, directory, seed=0)
        return made[name]

    return get


@pytest.fixture(scope="session")
def engine_env():
    """Environment for child processes running ``python -m boost_core`` from the repo."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env
