"""Copies the top-level catalogs (models/, hardware/) into the wheel as simcore/_data.

The repository keeps the catalogs at the top level where users edit them; an installed
wheel has no repository around it, so the build puts a copy inside the package.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
CATALOGS = ("models", "hardware")


class BuildWithCatalogs(build_py):
    def run(self):
        super().run()
        for name in CATALOGS:
            dest = Path(self.build_lib) / "simcore" / "_data" / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(ROOT / name, dest)


setup(cmdclass={"build_py": BuildWithCatalogs})
