"""Forwards side by side (boost_core/speed/lanes.py): a pair of patches runs one sample a lane, each lane on its own
share of the threads, with the results of one at a time (the goldens run the default, lanes included)."""

from __future__ import annotations

import platform
import signal
import threading
import time

import numpy as np
import pytest
import torch

from boost_core.algorithm.pipeline import load_networks
from boost_core.speed import acceleration, lanes
from boost_core.speed.acceleration import Acceleration


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_lanes_run_at_once_in_their_own_threads_with_their_own_thread_count(two_threads):
    pool = lanes.ForwardLanes(2, 1)
    both = threading.Barrier(2, timeout=30)  # broken (an error) unless both items run at the same time

    def probe(item):
        both.wait()
        return item, threading.current_thread().name, torch.get_num_threads()

    try:
        out = pool.map(probe, ["a", "b"])
    finally:
        pool.close()
    assert [item for item, _, _ in out] == ["a", "b"]
    names = {name for _, name, _ in out}
    assert len(names) == 2 and all(name.startswith("boost-depth-lane") for name in names)
    assert [threads for _, _, threads in out] == [1, 1]
    assert torch.get_num_threads() == 2  # the caller's own count is untouched


def test_an_error_in_a_lane_reaches_the_caller():
    pool = lanes.ForwardLanes(2, 1)
    try:
        with pytest.raises(ZeroDivisionError):
            pool.map(lambda x: 1 / x, [1, 0])
    finally:
        pool.close()
    with pytest.raises(ValueError, match="count >= 2"):
        lanes.ForwardLanes(1, 1)


@pytest.mark.parametrize("bad", [0, -1, True, "2", 1.5])
def test_bad_lane_options_are_refused(bad):
    with pytest.raises(ValueError, match="lanes must be"):
        Acceleration(lanes=bad)


def test_which_options_give_lanes(two_threads):
    assert acceleration.forward_lanes(acceleration.PLAIN) is None
    assert acceleration.forward_lanes(Acceleration(lanes=1)) is None
    assert acceleration.forward_lanes(Acceleration(lanes=2), "cuda") is None
    forced = acceleration.forward_lanes(Acceleration(lanes=2, reuse_freed_memory=False))
    assert (forced.count, forced.threads_per_lane) == (2, 1)
    forced.close()
    auto = acceleration.forward_lanes(Acceleration())
    if platform.libc_ver()[0] == "glibc":  # the one-heap setting applies: two lanes of one thread
        assert (auto.count, auto.threads_per_lane) == (2, 1)
        auto.close()
    else:
        assert auto is None
    assert acceleration.forward_lanes(Acceleration(reuse_freed_memory=False)) is None
    torch.set_num_threads(1)
    assert acceleration.forward_lanes(Acceleration()) is None


@pytest.fixture(scope="module")
def laned(checkpoints):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    networks = load_networks("midas_v2", checkpoints("midas_v2"), checkpoints("merge_net"),
                             acceleration=Acceleration(lanes=2))
    yield networks
    networks.lanes.close()
    torch.set_num_threads(before)


def _spy(model) -> list:
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(
        (threading.current_thread().name, args[0].shape[0])))
    return seen


def test_a_pair_runs_one_sample_a_lane_with_the_one_at_a_time_results(laned):
    rng = np.random.default_rng(7)
    crops = [rng.random((200, 300, 3)), rng.random((240, 180, 3))]
    seen = _spy(laned.base_model)
    together = laned.singles(crops, 384, max_batch=2)
    in_lanes = list(seen)
    alone = [laned.singles([crop], 384)[0] for crop in crops]
    assert len(in_lanes) == 2 and {n for n, _ in in_lanes} == {"boost-depth-lane_0", "boost-depth-lane_1"}
    assert [batch for _, batch in in_lanes] == [1, 1]
    assert [name for name, _ in seen[2:]] == ["MainThread", "MainThread"]  # one sample: every thread, no lane
    for a, b in zip(together, alone):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.ptp(b)))

    seen_merge = _spy(laned.merge_model)
    lows = [rng.random((1024, 1024)).astype(np.float32) for _ in range(2)]
    highs = [rng.random((1024, 1024)).astype(np.float32) for _ in range(2)]
    merged = laned.merges(lows, highs, max_batch=2)
    assert {name for name, _ in seen_merge} == {"boost-depth-lane_0", "boost-depth-lane_1"}
    for low, high, one in zip(lows, highs, merged):
        np.testing.assert_allclose(one, laned.merge(low, high), rtol=0, atol=1e-5)


def test_the_default_networks_run_pairs_in_lanes_here(checkpoints):
    """On a glibc machine with >= 2 threads (this project's, CI's) the defaults give lanes, so the Final goldens,
    which use the defaults, check the laned path against the reference."""
    networks = load_networks("midas_v2", checkpoints("midas_v2"), checkpoints("merge_net"))
    try:
        if platform.libc_ver()[0] == "glibc" and torch.get_num_threads() >= 2:
            assert networks.lanes is not None and networks.lanes.count == 2
        else:
            assert networks.lanes is None
    finally:
        if networks.lanes is not None:
            networks.lanes.close()


class Nap(torch.nn.Module):
    """A layer that takes 20 ms and counts its calls."""

    calls = 0

    def forward(self, x):
        Nap.calls += 1
        time.sleep(0.02)
        return x


def test_a_cancel_stops_the_lanes_between_two_layers():
    """200 layers of 20 ms (4 s a forward); cancelled after ~0.3 s: both lanes stop at their next layer."""
    model = torch.nn.Sequential(*[Nap() for _ in range(200)])
    pool = lanes.ForwardLanes(2, 1)
    pool.watch(model)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    Nap.calls = 0
    try:
        with pytest.raises(lanes.LanesStopped):
            pool.map(model, [torch.zeros(1), torch.zeros(1)], cancel=cancel)
        for future in pool._running:  # the lanes' own work ended with the stop, not with the forward
            assert isinstance(future.exception(timeout=5), lanes.LanesStopped)
        assert Nap.calls < 100  # of 400: each lane ran a few layers, then stopped

        Nap.calls = 0  # the stop does not linger: the next call runs to the end, and so does a forward here
        short = torch.nn.Sequential(*[Nap() for _ in range(3)])
        pool.watch(short)
        assert [t.item() for t in pool.map(short, [torch.ones(1), torch.zeros(1)])] == [1.0, 0.0]
        model(torch.zeros(1))
        assert Nap.calls == 6 + 200
    finally:
        pool.close()


def test_an_interrupted_wait_stops_the_lanes_too():
    """Ctrl-C / SIGTERM reach the waiting caller as KeyboardInterrupt: it propagates, and the lanes stop."""
    model = torch.nn.Sequential(*[Nap() for _ in range(200)])
    pool = lanes.ForwardLanes(2, 1)
    pool.watch(model)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    Nap.calls = 0
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            pool.map(model, [torch.zeros(1), torch.zeros(1)])
        for future in pool._running:
            assert isinstance(future.exception(timeout=5), lanes.LanesStopped)
        assert Nap.calls < 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        pool.close()


def test_a_cancelled_pair_raises_cancelled_before_its_forwards_end(laned):
    """The job's cancel event set while a 768² pair runs: Cancelled, and neither forward reached its end."""
    from boost_core.algorithm.depth_networks import Cancelled

    finished = []
    handle = laned.base_model.register_forward_hook(lambda module, args, out: finished.append(1))
    cancel = threading.Event()
    laned.cancel = cancel
    rng = np.random.default_rng(3)
    try:
        threading.Timer(0.3, cancel.set).start()
        with pytest.raises(Cancelled):
            laned.singles([rng.random((300, 300, 3)), rng.random((300, 300, 3))], 768)
        assert finished == []
    finally:
        handle.remove()
        laned.cancel = None
