"""Blending masks of local boosting (boost_core.algorithm.merging): the feathered template and its per-patch resizes."""

import cv2
import numpy as np

from boost_core.algorithm import merging


def test_feather_template_is_the_blurred_square_of_the_reference():
    # the reference's definition: a 2-D Gaussian blur (kernel 749, sigma 187) of the 1-valued centre square,
    # min-max normalised; the template computes it as the outer product of a blurred 1-D box
    size, margin = merging.MASK_TEMPLATE_SIZE, int(merging.MASK_MARGIN * merging.MASK_TEMPLATE_SIZE)
    square = np.zeros((size, size), np.float32)
    square[margin:size - margin, margin:size - margin] = 1
    expected = cv2.GaussianBlur(square, (749, 749), 187)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    template = merging.feather_mask_template()
    assert template.shape == (size, size) and template.dtype == np.float32 and not template.flags.writeable
    assert float(np.abs(template - expected).max()) < 2e-6
    assert template.min() == 0 and template.max() == 1
    np.testing.assert_array_equal(template, template.T)


def test_feather_masks_are_resized_once_per_shape():
    masks = merging.FeatherMasks()
    mask = masks((120, 200))
    assert mask.shape == (120, 200) and mask.dtype == np.float32
    assert masks((120, 200)) is mask
    assert mask[60, 100] > 0.99 and mask[0, 0] < 1e-3
