"""Runs inside the real Blender (``blender -b --python-exit-code 1 --python check_install.py -- RESULT_JSON``)
after ``blender --command extension install-file --enable``: the extension is enabled from the user
preferences that command saved, and its operators and panels are registered. Writes what it saw to
RESULT_JSON; any failed check raises (exit code 1 through --python-exit-code)."""

import json
import os
import sys

import bpy

result_path = sys.argv[sys.argv.index("--") + 1]
addons = sorted(bpy.context.preferences.addons.keys())
ours = [name for name in addons if name.endswith(".boost_depth")]
seen = {
    "blender": bpy.app.version_string,
    "addons": addons,
    "module": ours[0] if ours else None,
    "module_file": None,
    "operators": sorted(name for name in dir(bpy.ops.boost_depth)),
    "panels": sorted(name for name in dir(bpy.types) if name.startswith("BOOST_DEPTH_PT_")),
    "has_job_state": hasattr(bpy.types.WindowManager, "boost_depth_job"),
}
if ours:
    seen["module_file"] = sys.modules[ours[0]].__file__
with open(result_path, "w") as f:
    json.dump(seen, f, indent=1)

assert len(ours) == 1, f"boost_depth is not enabled in the preferences: {addons}"
assert ours[0] == "bl_ext.user_default.boost_depth", ours
# an operator is registered when its RNA type resolves (a missing one raises)
bpy.ops.boost_depth.estimate.get_rna_type()
for op in ("estimate", "cancel", "mesh_from_depth", "pick_focus", "dof_camera"):
    assert hasattr(bpy.types, f"BOOST_DEPTH_OT_{op}"), f"operator boost_depth.{op} is not registered"
assert "BOOST_DEPTH_PT_image_main" in seen["panels"], seen["panels"]
assert seen["has_job_state"], "WindowManager.boost_depth_job is missing"
user = os.environ["BLENDER_USER_RESOURCES"]
assert seen["module_file"].startswith(user), f"installed outside the test's user folder: {seen['module_file']}"
print("check_install: ok", seen["module"], flush=True)
