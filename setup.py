"""Build step that pyproject.toml cannot express: ship the repository's example policies, Grafana
dashboard and alert rules inside the package, copied at build time so that they cannot drift."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("policies", "deploy/grafana", "deploy/prometheus")


class BuildWithBundledFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's files (gateway/cli/bundled.py)
        root = Path(__file__).resolve().parent
        for name in BUNDLED:
            target = Path(self.build_lib) / "gateway" / "bundled" / name
            shutil.copytree(root / name, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithBundledFiles})
