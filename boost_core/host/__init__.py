"""Process support around the engine: ``engine_process`` (running ``python -m boost_core`` as a child and reading
its JSON lines; thread jobs), ``signals`` (SIGTERM ends a job like Ctrl-C), ``devices`` (auto / cpu / cuda / mps),
``peak_memory`` (a job's peak RSS and CUDA memory) and ``dependencies`` (installing the engine's packages). No
torch at import, so the Blender side may import these."""
