"""The resolution search's max-pooling (numpy, so the engine does not need scikit-image at run time) against
scikit-image's block_reduce, which the reference uses."""

import numpy as np
import pytest
import skimage.measure

from boost_core.algorithm.resolution import _max_pool_to


@pytest.mark.parametrize("n, p_size", [(100, 7), (1024, 33), (37, 40), (64, 8), (1000, 3), (5, 1)])
def test_max_pool_equals_block_reduce(n, p_size):
    square = np.random.default_rng(n).random((n, n))
    block = max(n // p_size, 1)
    expected = skimage.measure.block_reduce(square, (block, block), np.max)
    got = _max_pool_to(square, p_size)
    assert got.shape == expected.shape and np.array_equal(got, expected)
