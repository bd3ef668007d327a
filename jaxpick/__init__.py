"""jaxpick: cryo-EM particle picking and denoising in JAX, compatible with Topaz.

Importing jaxpick has no side effects: no jax.config calls and no device work.
"""

from jaxpick._version import __version__

__all__ = ["__version__"]
