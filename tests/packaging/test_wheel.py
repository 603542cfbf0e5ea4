"""`python -m build` makes a wheel that installs into a fresh venv and runs: both commands
answer, and a single peer from that venv serves HTTP."""

import os
import subprocess
import sys
import urllib.request
import venv

import pytest

from tests.ports import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.package

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, **kwargs)


def test_the_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), ROOT)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = list(dist.glob("registry_svc-*.whl"))

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    installed = run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel))
    assert installed.returncode == 0, installed.stderr[-3000:]

    for command in ("registry", "oo"):
        answered = run(str(env_dir / "bin" / command), "--help", cwd=tmp_path)
        assert answered.returncode == 0 and "Usage" in answered.stdout, answered.stderr

    http_port = free_port()
    peer = subprocess.Popen(
        [str(env_dir / "bin" / "registry"), "serve", "--raft-address", f"127.0.0.1:{free_port()}",
         "--http-address", f"127.0.0.1:{http_port}", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        def ready():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as answer:
                    return answer.status == 200
            except OSError:
                assert peer.poll() is None, peer.stderr.read().decode()
                return False
        wait_until(ready, 60, "the peer from the installed wheel to be ready")
        # The dashboard's files are package data: the installed peer serves them.
        for name in ("index.html", "app.js", "style.css"):
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ui/{name}", timeout=10) as answer:
                with open(os.path.join(ROOT, "api", "ui_assets", name), "rb") as source:
                    assert answer.status == 200 and answer.read() == source.read(), name
    finally:
        peer.terminate()
        try:
            peer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
    # The installed copy ran, not the checkout.
    assert str(env_dir) in run(python, "-c", "import api, cluster; print(api.__file__)", cwd=tmp_path).stdout
