"""The user interface: ``sidebar`` (the "Depth" tab of the 3D Viewport's and the Image Editor's sidebar, the job's
progress in the status bar) and ``menus`` (Image > Depth, Add > Depth). The add-on's preferences are drawn by
``preferences.py`` at the extension's root."""

from . import menus, sidebar

_modules = (sidebar, menus)


def register():
    for module in _modules:
        module.register()


def unregister():
    for module in reversed(_modules):
        module.unregister()
