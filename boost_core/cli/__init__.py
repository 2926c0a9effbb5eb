"""Command lines, one module per command: ``main`` (``python -m boost_core`` dispatch), ``estimate`` (the default
command and the JSON-lines protocol), ``weights``, ``merge``, ``resolution``, ``evaluate``, ``prepare_dataset``,
``train``. Human messages go to stderr; with ``--progress json`` stdout carries only JSON lines."""
