"""The model store: which weight files exist (``store``'s registry, as data), where they live (the models folder),
how they are fetched (``download``: resumable HTTP with SHA-256 checks and locks) and verified. No torch."""
