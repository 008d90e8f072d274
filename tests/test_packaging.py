"""`pip install .` outside the checkout, then `waybill run`: migrations, sql/, config and seed ship as
package data (waybill/resources.py), so the installed command needs nothing from the repository.

Kept lean: the wheel is built without build isolation (the dev venv's setuptools) from a copy of
the files it packs, and installed with --no-deps into a fresh venv whose dependencies come from the
dev venv's site-packages (a .pth line; .pth files there, such as the editable install's, stay inert).
"""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from waybill import process
from waybill.cluster import free_port
from waybill.settings import PROJECT_ROOT

PACKED = ["pyproject.toml", "README.md", "waybill", "gateway", "dispatcher", "migrations", "sql", "config"]


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in PACKED:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp.glob("waybill-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "dev-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return venv


def test_installed_package_runs_the_stack_outside_the_checkout() -> None:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="waybill-pkg-"))
    tmp.chmod(0o755)  # as root the server runs as postgres, which must reach the data directory inside
    try:
        venv = _fresh_venv(tmp, _build_wheel(tmp))
        work = tmp / "elsewhere"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV")}
        where = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import waybill, gateway, dispatcher; print(waybill.__file__, gateway.__file__, dispatcher.__file__)",
            ],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert str(PROJECT_ROOT) not in where and str(venv) in where, where

        port, admin_port = free_port(), free_port()
        env |= {
            "WAYBILL_DATA_DIR": str(tmp / "data"),
            "WAYBILL_API_PORT": str(port),
            "WAYBILL_API_ADMIN_PORT": str(admin_port),
        }
        proc = process.start(
            [str(venv / "bin" / "waybill"), "run"], env=env, cwd=work, output=subprocess.PIPE, text=True
        )
        banner: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                banner.append(line.rstrip("\n"))
                if "Ctrl-C stops everything." in line:
                    break
                assert time.monotonic() - started < 120, "\n".join(banner)
            text = "\n".join(banner)
            assert "migrations: " in text and "Waybill is running." in text, text
            r = httpx.get(f"http://127.0.0.1:{port}/rpc/health_db", timeout=10)
            assert r.status_code == 200, r.text
            r = httpx.get(f"http://127.0.0.1:{port}/error_codes?code=eq.ORDER_NOT_FOUND", timeout=10)
            assert r.status_code == 200 and r.json()[0]["http_status"] == 404, r.text
        finally:
            process.stop(proc, sig=signal.SIGINT, grace=60)
        assert proc.returncode == 0, "\n".join(banner)
        print(f"packaging test: {time.monotonic() - started:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
