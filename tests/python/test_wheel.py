"""The package as users get it: `make wheel`'s abi3 manylinux wheel and sdist, installed
into a fresh virtual environment with no Rust toolchain on PATH, serving a request.

The wheel is built by the same `maturin build --release` as `make wheel`; after `make
build` cargo has every artifact, so this costs the packaging only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import httpx
import tomllib
from conftest import REPO, free_port

MATURIN = Path(sys.executable).with_name("maturin")
VERSION = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]

APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from the wheel"})
'''


def without_rust(env: dict[str, str]) -> dict[str, str]:
    """`env` with no directory holding cargo or rustc on PATH, and no Rust variables."""
    keep = [d for d in env.get("PATH", "").split(os.pathsep)
            if d and not any(Path(d, tool).exists() for tool in ("cargo", "rustc"))]
    clean = {k: v for k, v in env.items()
             if not k.startswith(("CARGO", "RUSTUP", "FERRICORN_")) and k != "PYTHONPATH"}
    clean["PATH"] = os.pathsep.join(keep)
    return clean


def test_wheel_installs_and_serves_without_rust(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        ["make", "-s", "wheel", f"DIST={dist}", f"MATURIN={MATURIN}"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert re.fullmatch(
        rf"ferricorn-{re.escape(VERSION)}-cp310-abi3-manylinux_2_\d+_x86_64\.whl", wheel.name
    ), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"ferricorn-{VERSION}.dist-info/METADATA").decode()
    assert {"ferricorn/py.typed", "ferricorn/_ferricorn.pyi", "ferricorn/__init__.py"} <= names
    assert any(re.fullmatch(r"ferricorn/_ferricorn\.abi3\.so", n) for n in names), names
    assert f"Version: {VERSION}" in metadata
    extras = re.findall(r"^Requires-Dist: (.*)$", metadata, re.M)
    assert any(r.startswith("uvloop") and "extra == 'standard'" in r for r in extras), extras
    assert any(r.startswith("pyyaml") and "extra == 'standard'" in r for r in extras), extras
    assert "Provides-Extra: standard" in metadata
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
    assert {"Cargo.toml", "pyproject.toml", "src/lib.rs", "python/ferricorn/__init__.py"} \
        <= members

    env = without_rust(dict(os.environ))
    assert shutil.which("cargo", path=env["PATH"]) is None
    assert shutil.which("rustc", path=env["PATH"]) is None
    home = tmp_path / "venv"
    venv.create(home, with_pip=True, symlinks=True)
    python = home / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "-q", str(wheel)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    version = subprocess.run([home / "bin" / "ferricorn", "--version"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith(f"Running ferricorn {VERSION} with CPython"), version

    site = tmp_path / "site"
    site.mkdir()
    (site / "wheelapp.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen(
        [home / "bin" / "ferricorn", "wheelapp:app", "--port", str(port)],
        cwd=site, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "running on" in line:
                break
        else:
            raise AssertionError(f"the installed server exited with {proc.wait()}")
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert (response.status_code, response.text) == (200, "from the wheel")
    finally:
        proc.terminate()
        proc.wait(10)
    # It is the installed copy that served, not the checkout.
    where = subprocess.run(
        [python, "-c", "import ferricorn, sys; print(ferricorn.__file__)"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert where.stdout.strip().startswith(str(home)), where.stdout
