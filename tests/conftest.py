"""Shared fixtures: synthetic checkpoints in the official layouts, built once per test session."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
for path in (str(TESTS), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)


_OWN_BASETEMP = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A private temp root per session: pytest prunes all but the newest 3 numbered pytest-of-<user> folders in the temp dir,
    so a concurrent session (or the nested Blender suites) would otherwise delete this one's checkpoints."""
    if not config.option.basetemp:
        config.option.basetemp = tempfile.mkdtemp(prefix="boost-depth-tests-")
        _OWN_BASETEMP.append(config.option.basetemp)
    if not os.environ.get("BOOST_DEPTH_CACHE"):  # compiled kernels (boost_core.speed.kernels.compiled) of this session only
        cache = tempfile.mkdtemp(prefix="boost-depth-cache-")
        os.environ["BOOST_DEPTH_CACHE"] = cache
        _OWN_BASETEMP.append(cache)


def pytest_unconfigure(config):
    for path in _OWN_BASETEMP:
        shutil.rmtree(path, ignore_errors=True)  # several GB of synthetic checkpoints


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
