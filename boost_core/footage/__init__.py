"""Footage and farms: frame sources, resumable jobs, temporal alignment, Ray.

Standard library + numpy/cv2 only at import; Ray is imported only by ``ray_runner`` and only for ``--ray``."""
