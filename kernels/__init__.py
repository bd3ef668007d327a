"""Accelerator kernels, each beside a plain reference implementation it is tested against.

Installed as ``jaxpick.kernels``. Modules here import jax only, never the rest of jaxpick.
"""
