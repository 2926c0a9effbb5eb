"""How Blender runs the engine: ``settings`` (the add-on's preferences and the registries the UI reads),
``request`` (one engine child decided once: interpreter, environment, arguments, where the result goes) and
``running`` (the one job at a time, polled on Blender's main thread by a timer)."""
