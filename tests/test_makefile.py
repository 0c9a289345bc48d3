"""The Makefile honours INCEPTION_DEPLOY_DATA, as the README says (checked with make's dry run)."""
import os
import subprocess

from inception_deploy.pipeline import paths


def dry_run(target, **env):
    res = subprocess.run(["make", "-n", "--no-print-directory", target, "OUT=/nonexistent/out"], capture_output=True,
                         text=True, cwd=paths.REPO_ROOT, env=dict(os.environ, **env))
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_make_reads_the_data_folder_from_inception_deploy_data():
    out = dry_run("calibrate", INCEPTION_DEPLOY_DATA="/data/elsewhere")
    assert "--images /data/elsewhere/tiny-imagenet-200/calib" in out
    assert "--parity-images /data/elsewhere/tiny-imagenet-200/val" in out
    assert "../shared/data" not in out


def test_make_defaults_to_the_shared_data_and_data_overrides_both():
    env = {k: v for k, v in os.environ.items() if k != "INCEPTION_DEPLOY_DATA"}
    res = subprocess.run(["make", "-n", "--no-print-directory", "export", "OUT=/nonexistent/out"], capture_output=True,
                         text=True, cwd=paths.REPO_ROOT, env=env)
    assert "--parity-images ../shared/data/tiny-imagenet-200/val" in res.stdout, res.stdout + res.stderr
    assert "--parity-images /d2/tiny-imagenet-200/val" in dry_run("export", INCEPTION_DEPLOY_DATA="/x", DATA="/d2")
