"""Build hook: puts the laic C library inside the package.

``pip install ./bindings/python`` runs ``cargo build --release --lib`` in the repository that
holds this folder and copies the cdylib it reports into ``laic/``. With ``LAIC_LIBRARY`` set to
a prebuilt ``liblaic.so`` nothing is compiled and that file is copied instead. ``CARGO`` names
the cargo binary (default ``cargo``). The wheel is tagged ``py3-none-<platform>``: the package
is pure Python over ctypes, but carries a native library.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
LIB_NAMES = {"darwin": "liblaic.dylib", "win32": "laic.dll"}
LIB_NAME = LIB_NAMES.get(sys.platform, "liblaic.so")


def repo_root() -> Path:
    for d in [HERE, *HERE.parents]:
        if (d / "Cargo.toml").is_file() and (d / "include" / "laic.h").is_file():
            return d
    raise SystemExit(f"laic: no Cargo.toml above {HERE}; set LAIC_LIBRARY to a prebuilt {LIB_NAME}")


def cargo_build() -> Path:
    """Runs cargo and returns the cdylib it produced."""
    root = repo_root()
    cargo = os.environ.get("CARGO", "cargo")
    cmd = [
        cargo,
        "build",
        "--release",
        "--lib",
        "--message-format=json-render-diagnostics",
        "--manifest-path",
        str(root / "Cargo.toml"),
    ]
    print("laic: " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"laic: cargo build failed with status {proc.returncode}")
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and "cdylib" in msg["target"]["kind"]:
            for f in msg["filenames"]:
                if Path(f).name == LIB_NAME:
                    return Path(f)
    raise SystemExit(f"laic: cargo did not report {LIB_NAME}")


class BuildPyWithLibrary(build_py):
    """build_py that also places the C library in the built package."""

    def run(self) -> None:
        super().run()
        env = os.environ.get("LAIC_LIBRARY")
        src = Path(env) if env else cargo_build()
        if not src.is_file():
            raise SystemExit(f"laic: LAIC_LIBRARY={src} is not a file")
        dest = Path(self.build_lib) / "laic" / LIB_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o755)
        print(f"laic: packaged {src}", file=sys.stderr)


class BinaryDistribution(Distribution):
    """Carries a native library: installed to platlib, wheel tagged for the platform."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """A wheel for this platform but any Python 3 (ctypes, no extension module)."""

    def get_tag(self) -> tuple[str, str, str]:
        return ("py3", "none", super().get_tag()[2])


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
)
