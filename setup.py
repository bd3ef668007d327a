"""Package layout only (everything else is in pyproject.toml).

`kernels/` sits at the top of the repository, beside `jaxpick/`, but installs under the import
name `jaxpick.kernels`: a bare top-level package called `kernels` would collide in users'
environments. pyproject.toml alone cannot list the remapped sub-packages, hence this file.
Kernel sources compiled at run time (``kernels/nms/cpu_ffi.cc``) ship as package data.
"""

from setuptools import find_packages, setup

kernel_packages = ["jaxpick." + name for name in find_packages(include=["kernels", "kernels.*"])]
setup(
    packages=find_packages(include=["jaxpick", "jaxpick.*"]) + kernel_packages,
    package_dir={"jaxpick": "jaxpick", "jaxpick.kernels": "kernels"},
    package_data={"jaxpick.kernels.nms": ["*.cc"]},
)
