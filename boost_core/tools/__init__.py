"""Research tools beside the method: ``byod`` (Boost Your Own Depth: merge two maps with the merge network),
``evaluation`` (ORD, D³R, RMSE, δ against ground truth) and ``training/`` (training the merge network)."""
