"""Add-on preferences: which Python runs inference, device, default network and mode, the models folder with
every model file (size, licence, status, Download), and PyTorch (installed state, versions, Install / Uninstall)."""

import bpy
from bpy.props import EnumProperty, StringProperty

from .boost_core.host import torch_install
from .boost_core.weights import download
from .engine_link import request, settings
from .engine_link import running
from .operators import setup
from .operators.properties import net_property


def _forget(_self, _context):
    settings.forget_weights_cache()


STATUS_ICONS = {"ok": "CHECKMARK", "unverified": "QUESTION", "missing": "IMPORT", "corrupt": "ERROR"}


class BoostDepthPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python_source: EnumProperty(
        name="Python",
        items=(
            ("BLENDER", "Blender's Python", "Blender's own Python, with the libraries Blender installed with the "
             "extension and the PyTorch installed below"),
            ("CUSTOM", "Other Interpreter", "A Python 3.11+ that already has torch, numpy and OpenCV"),
        ),
        default="BLENDER",
    )
    python_path: StringProperty(
        name="Interpreter",
        subtype="FILE_PATH",
        description="Path of the python executable that runs the depth engine",
    )
    device: EnumProperty(name="Device", items=settings.DEVICES, default="auto")
    default_net: net_property(name="Default Network", description="Network used when none is chosen",
                              default=settings.SUGGESTED_NET)
    default_mode: EnumProperty(name="Default Mode", items=settings.MODES, default="final")
    models_dir: StringProperty(
        name="Models Folder",
        subtype="DIR_PATH",
        update=_forget,
        description="Where model weights live (empty: the extension's user folder)",
    )
    mirror: StringProperty(
        name="Mirror",
        description="Base URL of a studio mirror replacing the official hosts "
        "(e.g. http://models.studio.lan); empty: official hosts",
    )
    torch_index: StringProperty(
        name="Package Index",
        description="A PEP 503 package index (a studio mirror) holding the PyTorch file Boost Depth pins; empty: "
        "the official host. The file's SHA-256 is checked either way",
    )
    interpreter_report: StringProperty(name="Interpreter Report", options={"SKIP_SAVE"})

    def draw(self, context):
        layout = self.layout
        self.draw_inference(layout.box())
        self.draw_models(layout.box(), context)
        if self.python_source == "BLENDER":
            self.draw_dependencies(layout.box())
        self.draw_job(layout, context)

    def draw_inference(self, box):
        box.label(text="Inference", icon="SETTINGS")
        col = box.column()
        col.use_property_split = True
        col.prop(self, "python_source", expand=True)
        if self.python_source == "CUSTOM":
            col.prop(self, "python_path")
        row = col.row()
        row.operator("boost_depth.check_interpreter", icon="CONSOLE")
        if self.interpreter_report:
            for line in self.interpreter_report.splitlines()[:6]:
                col.label(text=line)
        col.prop(self, "device")
        col.prop(self, "default_net")
        col.prop(self, "default_mode")

    def draw_models(self, box, context):
        box.label(text="Models", icon="FILE_FOLDER")
        col = box.column()
        col.use_property_split = True
        col.prop(self, "models_dir")
        folder = settings.resolved_models_dir(self)
        if folder is not None and not self.models_dir.strip():
            col.label(text=f"Default: {folder}")
        col.prop(self, "mirror")
        if not setup.online():
            box.label(text="Online access is off: downloads are disabled.", icon="INTERNET_OFFLINE")
            box.label(text="Turn on Preferences > System > Network > Allow Online Access,")
            box.label(text="or copy the files into the models folder yourself.")
        rows = setup.weight_rows(self)
        if not rows:
            box.label(text="The weights registry (boost_core.weights.store) is not available.", icon="ERROR")
        active = running.active()
        for r in rows:
            row = box.row()
            split = row.split(factor=0.45)
            split.label(text=f"{r['title']} ({r['name']})")
            right = split.split(factor=0.25)
            right.label(text=r["size"])
            right = right.split(factor=0.45)
            right.label(text=r["licence"][:40])
            status = r["status"]
            downloading = active is not None and active.title == f"Downloading {r['name']}"
            if downloading:
                right.progress(factor=active.job.fraction, text=active.job.message or "Downloading…")
            elif r["manual"] and status == "missing":
                right.label(text="manual download", icon="INFO")
            else:
                sub = right.row(align=True)
                sub.label(text=status, icon=STATUS_ICONS.get(status, "ERROR"))
                if status in ("missing", "corrupt"):
                    op = sub.operator("boost_depth.download_weights", text="Download", icon="IMPORT")
                    op.name = r["name"]
            if r["accept"]:
                box.label(text=f"   {r['name']}: {r['licence']} (shown before downloading)", icon="ERROR")

    def draw_dependencies(self, box):
        box.label(text="PyTorch and libraries", icon="PACKAGE")
        col = box.column()
        site = request.wheels_site_packages()
        bundled = []
        for info in sorted(site.glob("*.dist-info")) if site else ():
            name, _, version = info.name.removesuffix(".dist-info").partition("-")
            if name.lower() in ("opencv_python_headless", "openexr", "typing_extensions"):
                bundled.append(f"{name.replace('_python_headless', '').replace('_', '-')} {version}")
        col.label(text="Bundled: " + (", ".join(bundled) if bundled else "not installed (reinstall the extension)"),
                  icon="CHECKMARK" if bundled else "ERROR")
        root = request.torch_root()
        installed = torch_install.installed(root)
        if installed is not None:
            col.label(text=f"PyTorch {installed.version} ({installed.build}), Python {installed.python}, "
                           f"{download.human_size(installed.disk_bytes)} in {installed.folder}", icon="CHECKMARK")
        else:
            col.label(text="PyTorch: not installed", icon="ERROR")
        sub = col.column()
        sub.use_property_split = True
        sub.prop(self, "torch_index")
        row = box.row()
        install = row.row()
        install.enabled = setup.online() and not running.running()
        install.operator_menu_enum("boost_depth.install_torch", "build",
                                   text="Reinstall PyTorch" if installed else "Install PyTorch", icon="IMPORT")
        row.operator("boost_depth.uninstall_torch", icon="TRASH")
        if not setup.online():
            box.label(text="Online access is off: PyTorch cannot be downloaded.", icon="INTERNET_OFFLINE")

    def draw_job(self, layout, context):
        state = context.window_manager.boost_depth_job
        if state.running:
            row = layout.row(align=True)
            row.progress(factor=state.fraction, text=f"{state.title}: {state.message}")
            row.operator("boost_depth.cancel", text="", icon="X")
        elif state.last_error:
            layout.label(text=state.last_error, icon="ERROR")


classes = (BoostDepthPreferences,)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
