"""The model store: ``catalogue`` (which weight files exist, as data: URLs, sizes, hashes, licences, and a studio's
own entries), ``store`` (the models folder: locate, verify, download) and ``download`` (resumable HTTP with SHA-256
checks and locks). No torch."""
