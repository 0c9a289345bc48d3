"""Install paths per platform (extras per JetPack, the Jetson `make engine`), the README's version matrix
generated from the target files, and the CI example's device scale-out."""
import os
import subprocess
import sys
import tomllib

import yaml
from packaging.requirements import Requirement

from inception_deploy.engines.cli import version_matrix
from inception_deploy.engines.targets import resolve_target
from inception_deploy.pipeline import paths

ROOT = paths.REPO_ROOT


def _extras():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    extras = {k: {Requirement(r).name: Requirement(r) for r in v} for k, v in project["optional-dependencies"].items()}
    return project, extras


def test_extras_keep_pip_away_from_jetpacks_own_packages():
    project, extras = _extras()
    for name in ("runtime", "jetpack5", "jetpack6"):       # pip's cv2 would shadow JetPack's GStreamer OpenCV
        assert not any(n.startswith("opencv") for n in extras[name]), name
    assert "opencv-python-headless" in extras["opencv"]
    for name in ("jetpack5", "jetpack6"):                  # apt TensorRT/OpenCV bindings are built against numpy 1.x
        numpy = extras[name]["numpy"].specifier
        assert "1.24.4" in numpy and "2.0.0" not in numpy, name
    cp5, cp6 = extras["jetpack5"]["cuda-python"].specifier, extras["jetpack6"]["cuda-python"].specifier
    assert "11.8.2" in cp5 and "12.6.2" not in cp5 and "11.8.6" not in cp5     # CUDA 11.4; 11.8.2: aarch64 cp38 wheels
    assert "12.6.2" in cp6 and "12.2.0" in cp6 and "13.0.0" not in cp6 and "11.8.2" not in cp6
    assert "pycuda" in extras["pycuda"] and "13.4.4" in extras["tensorrt"]["cuda-python"].specifier
    deps = [Requirement(r) for r in project["dependencies"]]
    tomli = next(r for r in deps if r.name == "tomli")
    assert tomli.marker.evaluate({"python_version": "3.8"}) and not tomli.marker.evaluate({"python_version": "3.11"})


def _dry_run(*args):
    res = subprocess.run(["make", "-n", "engine", *args], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_make_engine_on_a_jetson_needs_only_what_building_needs():
    for l4t, extra in (("35", "jetpack5"), ("36", "jetpack6")):
        out = _dry_run("L4T_MAJOR=" + l4t, "TARGET=jetson")
        assert "venv --system-site-packages" in out and '-e ".[%s]"' % extra in out, out
        assert "build," not in out and "inception-deploy export" not in out and "inception-deploy calibrate" not in out
        assert "--no-bundle" in out and "--target jetson" in out
    host = _dry_run("L4T_MAJOR=")
    assert "system-site-packages" not in host and "--no-bundle" not in host


def test_readme_version_matrix_is_the_generated_one():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    start = readme.index("<!-- version matrix:")
    body = readme[readme.index("\n", start) + 1:readme.index("<!-- end of version matrix -->")]
    assert body == version_matrix(), "README's version matrix is stale: paste `inception-deploy targets --markdown`"
    assert "| `jetson-orin` |" in body and "| 12.6 | 3.10 | 7.1 |" in body and "| 11.4 | 3.8 | 6.3 |" in body
    res = subprocess.run([sys.executable, "-m", "inception_deploy.pipeline", "targets", "--markdown"], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 0 and res.stdout == version_matrix()


def test_ci_example_scales_out_to_device_runners_and_gates_them_together():
    with open(os.path.join(ROOT, "docs", "ci-example.yml")) as f:
        ci = yaml.safe_load(f)
    jobs = ci["jobs"]
    assert set(jobs) == {"gate", "device", "device-gate"}
    matrix = jobs["device"]["strategy"]["matrix"]["include"]
    assert jobs["device"]["runs-on"] == "${{ matrix.runner }}" and jobs["device"]["needs"] == "gate"
    for entry in matrix:
        resolve_target(entry["target"])                    # a real target
        assert "self-hosted" in entry["runner"] and len(entry["runner"]) >= 3
    steps = " ".join(str(s.get("run", "")) for s in jobs["device"]["steps"])
    assert "./build_on_device.sh int8" in steps and "./verify_on_device.sh int8" in steps
    final = jobs["device-gate"]
    assert set(final["needs"]) == {"gate", "device"} and "always()" in final["if"]
    script = " ".join(str(s.get("run", "")) for s in final["steps"])
    for entry in matrix:
        assert entry["target"] in script
    assert "inception-deploy gate" in script and "--junit" in script and "exit $status" in script
    bundles = " ".join(str(s.get("run", "")) for s in jobs["gate"]["steps"])
    assert all(e["target"] in bundles for e in matrix) and "make engine" in bundles


def test_the_five_folders_install_under_one_namespace():
    """pyproject lists every package folder (an __init__.py) under inception_deploy.*, maps each top-level
    folder onto its name, and the command's entry point and version come from the namespace."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)
    folders = ("pipeline", "engines", "runtime", "benchmarks", "calibration")
    found = {"inception_deploy"}
    for top in folders:
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in names:
                found.add("inception_deploy." + os.path.relpath(dirpath, ROOT).replace(os.sep, "."))
    setuptools = cfg["tool"]["setuptools"]
    assert set(setuptools["packages"]) == found
    assert setuptools["package-dir"] == {"inception_deploy." + f: f for f in folders}
    assert cfg["project"]["scripts"]["inception-deploy"] == "inception_deploy.pipeline.cli:main"
    assert setuptools["dynamic"]["version"]["attr"] == "inception_deploy.pipeline.__version__"
    res = subprocess.run([sys.executable, "-I", "-c", "import pipeline"], capture_output=True, text=True, cwd="/")
    assert res.returncode != 0 and "No module named 'pipeline'" in res.stderr   # no generic top-level name


def test_no_code_uses_the_short_package_names():
    """Code merged from a branch that imports by the short names (the package without inception_deploy.) fails here:
    run python tools/namespace_imports.py."""
    res = subprocess.run([sys.executable, os.path.join("tools", "namespace_imports.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout
