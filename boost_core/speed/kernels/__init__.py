"""Native kernels: ``winograd_transforms.c`` (the Winograd input and output transforms) and ``compiled``, which
builds it once per user with the system C compiler and loads it with ctypes (torch operations stand in without
a compiler)."""
