"""Maps the top-level modules/ folder to the subpackage hsflowd_py.modules."""

from setuptools import find_packages, setup

core = find_packages(include=["hsflowd_py", "hsflowd_py.*"])
modules = ["hsflowd_py.modules"] + [f"hsflowd_py.modules.{p}" for p in find_packages("modules")]
setup(
    packages=core + modules,
    package_dir={"hsflowd_py": "hsflowd_py", "hsflowd_py.modules": "modules"},
    package_data={"hsflowd_py.modules": ["*.c", "*/*.c"]},
)
