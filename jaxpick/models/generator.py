"""Topaz's autoencoder generator (``topaz/model/generative.py::ConvGenerator``) in Flax NNX.

With ``--autoencoder w > 0`` Topaz decodes the picker's latent vector of each training crop back
into an image and adds ``w`` times the reconstruction error to the loss. The generator
(NHWC here, NCHW in torch):

- ``ConvTranspose(latent, units * 2**depth, 4, stride 1, pad 0)`` (1x1 -> 4x4) + BN + LeakyReLU;
- ``depth`` x [``ConvTranspose(c, c // 2, 4, stride 2, pad 1)`` (doubles the side) + BN +
  LeakyReLU];
- ``ConvTranspose(units, 1, 3, stride 2, pad 1)`` (side ``n`` -> ``2n - 1``);

no biases, BN with torch's semantics (eps 1e-5, momentum 0.1, unbiased running variance),
LeakyReLU slope 0.01. The output side is ``8 * 2**depth - 1`` with
``depth = int(log2(receptive_field + 1) - 3)``: 63 for resnet6/8/16, 31/63/127 for
conv31/63/127.

Topaz weights map one to one: torch's ``generative.layers.{3j}.weight`` (``[in, out, k, k]``) is
``deconvs[j].kernel`` transposed to ``[k, k, in, out]`` (no flip), and
``generative.layers.{3j+1}.{weight, bias, running_mean, running_var}`` is
``bns[j].{scale, bias, mean, var}``.

Examples:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> depth = generator_depth(71)  # resnet8
  >>> generator = Generator(16, units=4, depth=depth, rngs=nnx.Rngs(0))
  >>> generator(jnp.zeros((2, 16)), train=False).shape
  (2, 63, 63)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.typing import ArrayLike

from jaxpick.models.layers import BatchNorm2d, _torch_uniform

#: Topaz's generator activation: ``nn.LeakyReLU()`` with torch's default slope.
LEAKY_SLOPE = 0.01

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def generator_depth(receptive_field: int) -> int:
    """Topaz's generator depth for a picker: ``int(log2(receptive_field + 1) - 3)``.

    Args:
      receptive_field: the picker's receptive field (71 for resnet8).

    Returns:
      The number of doubling layers (3 for resnet8/16, 2/3/4 for conv31/63/127).

    Raises:
      ValueError: a receptive field below 7, the smallest generator's side.

    Examples:
      >>> generator_depth(71), generator_depth(127)
      (3, 4)
    """
    if receptive_field < 7:  # the smallest generator (depth 0) is 7 x 7
        raise ValueError(
            f"receptive_field must be at least 7 for a generator, got {receptive_field}"
        )
    return int(math.log2(receptive_field + 1) - 3)


def output_side(depth: int) -> int:
    """The side of the generated image: ``8 * 2**depth - 1``.

    Raises:
      ValueError: a negative depth.

    Examples:
      >>> output_side(3)
      63
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    return 8 * 2**depth - 1


def conv_transpose2d(x: ArrayLike, kernel: ArrayLike, *, stride: int, padding: int) -> jax.Array:
    """torch's ``ConvTranspose2d`` (no bias, no output padding, dilation 1), NHWC float32.

    ``out[y, x, o] = sum x[iy, ix, i] * kernel[ky, kx, i, o]`` over ``y = iy * stride - padding +
    ky`` (and likewise for x): the gradient of a strided convolution. Computed as a correlation
    of the stride-dilated input, padded by ``k - 1 - padding``, with the spatially flipped
    kernel.

    Args:
      x: ``(B, H, W, Cin)``.
      kernel: ``(k, k, Cin, Cout)``, i.e. torch's weight ``[Cin, Cout, k, k]`` transposed
        ``(2, 3, 0, 1)``.
      stride: the transposed convolution's stride.
      padding: torch's ``padding`` (at most ``k - 1``).

    Returns:
      ``(B, H', W', Cout)`` with ``H' = (H - 1) * stride - 2 * padding + k``.

    Raises:
      ValueError: ``padding`` outside ``[0, k - 1]`` or ``stride < 1``.
    """
    x = jnp.asarray(x, jnp.float32)
    kernel = jnp.asarray(kernel, jnp.float32)
    k = kernel.shape[0]
    if not 0 <= padding <= k - 1:
        raise ValueError(f"padding must be in [0, {k - 1}] for a {k}x{k} kernel, got {padding}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    edge = k - 1 - padding
    return lax.conv_general_dilated(
        x,
        kernel[::-1, ::-1],
        window_strides=(1, 1),
        padding=((edge, edge), (edge, edge)),
        lhs_dilation=(stride, stride),
        dimension_numbers=_DIMENSIONS,
        precision=lax.Precision.HIGHEST,
        preferred_element_type=jnp.float32,
    )


class ConvTranspose2d(nnx.Module):
    """A bias-free transposed convolution with torch's default initialisation.

    torch initialises ``ConvTranspose2d`` weights ``[in, out, k, k]`` like any convolution
    weight, with fan-in computed from dimension 1: ``U(+-1/sqrt(out * k * k))``.

    Attributes:
      kernel: ``(k, k, Cin, Cout)``.
    """

    def __init__(
        self, nin: int, nout: int, kernel: int, *, stride: int, padding: int, rngs: nnx.Rngs
    ) -> None:
        self.stride = stride
        self.padding = padding
        shape = (kernel, kernel, nin, nout)
        self.kernel = nnx.Param(_torch_uniform(rngs.params(), shape, nout * kernel * kernel))

    def __call__(self, x: jax.Array) -> jax.Array:
        return conv_transpose2d(x, self.kernel[...], stride=self.stride, padding=self.padding)


class Generator(nnx.Module):
    """Topaz's ``ConvGenerator``: latent vector -> ``side x side`` image (NHWC internally).

    Attributes:
      latent_dim: input width (the picker's latent dimension).
      depth: number of doubling layers.
      side: output side, ``8 * 2**depth - 1``.
      deconvs: the ``depth + 2`` transposed convolutions, in order.
      bns: the ``depth + 1`` batch norms following all but the last of them.
    """

    def __init__(self, latent_dim: int, *, units: int = 32, depth: int, rngs: nnx.Rngs) -> None:
        """Builds the generator.

        Args:
          latent_dim: width of the latent vectors (``ModelConfig.latent_dim``).
          units: Topaz's ``--ngf`` (32).
          depth: number of doubling layers, usually :func:`generator_depth` of the picker.
          rngs: parameter initialisation.

        Raises:
          ValueError: ``latent_dim`` or ``units`` below 1, or a negative ``depth``.
        """
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if units < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        self.latent_dim = latent_dim
        self.depth = depth
        self.side = output_side(depth)
        width = units * 2**depth
        deconvs = [ConvTranspose2d(latent_dim, width, 4, stride=1, padding=0, rngs=rngs)]
        bns = [BatchNorm2d(width)]
        for _ in range(depth):
            deconvs.append(ConvTranspose2d(width, width // 2, 4, stride=2, padding=1, rngs=rngs))
            bns.append(BatchNorm2d(width // 2))
            width //= 2
        deconvs.append(ConvTranspose2d(units, 1, 3, stride=2, padding=1, rngs=rngs))
        self.deconvs = nnx.List(deconvs)
        self.bns = nnx.List(bns)

    def __call__(self, z: ArrayLike, *, train: bool) -> jax.Array:
        """Decodes latent vectors.

        Args:
          z: ``(B, latent_dim)`` or the picker's ``(B, 1, 1, latent_dim)`` features.
          train: BN with batch statistics (updating the running ones) rather than running ones.

        Returns:
          float32 ``(B, side, side)``.

        Raises:
          ValueError: ``z`` of another shape.
        """
        z = jnp.asarray(z, jnp.float32)
        if z.ndim == 2:
            z = z[:, None, None, :]
        if z.ndim != 4 or z.shape[1:] != (1, 1, self.latent_dim):
            raise ValueError(
                f"z must be (B, {self.latent_dim}) or (B, 1, 1, {self.latent_dim}), got {z.shape}"
            )
        h = z
        for deconv, bn in zip(self.deconvs, self.bns, strict=False):
            h = jax.nn.leaky_relu(bn(deconv(h), train=train), LEAKY_SLOPE)
        return self.deconvs[-1](h)[..., 0]


def reconstruction_loss(
    crops: ArrayLike, recon: ArrayLike, *, weights: ArrayLike | None = None
) -> jax.Array:
    """Topaz's autoencoder error: mean over crops of the summed squared pixel error.

    The crops are centre-cropped by ``(RF - side) // 2`` per side to the generator's size
    (``topaz/methods.py::autoencoder_loss``).

    Args:
      crops: float32 ``(B, RF, RF)`` training crops.
      recon: float32 ``(B, side, side)`` generator outputs.
      weights: optional 0/1 mask ``(B,)`` of valid crops (``None``: all valid); masked crops
        affect neither the value nor the gradient.

    Returns:
      The float32 scalar ``mean_b sum_pixels (crop - recon)**2`` over valid crops (0 if none).

    Raises:
      ValueError: shapes that do not match after centre-cropping, or ``weights`` not ``(B,)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(reconstruction_loss(jnp.ones((2, 71, 71)), jnp.zeros((2, 63, 63))))
      3969.0
    """
    crops = jnp.asarray(crops, jnp.float32)
    recon = jnp.asarray(recon, jnp.float32)
    if crops.ndim != 3 or recon.ndim != 3 or crops.shape[0] != recon.shape[0]:
        raise ValueError(
            f"crops (B, RF, RF) and recon (B, side, side) must share B, "
            f"got {crops.shape} and {recon.shape}"
        )
    pad = (crops.shape[1] - recon.shape[1]) // 2
    if pad > 0:
        crops = crops[:, pad:-pad, pad:-pad]
    if crops.shape != recon.shape:
        raise ValueError(
            f"crops {crops.shape} (centre-cropped by {max(pad, 0)}) do not match recon "
            f"{recon.shape}"
        )
    diff = crops - recon
    if weights is None:
        return jnp.mean(jnp.sum(jnp.square(diff), axis=(1, 2)))
    weights = jnp.asarray(weights)
    if weights.shape != crops.shape[:1]:
        raise ValueError(f"weights must have shape {crops.shape[:1]}, got {weights.shape}")
    valid = weights != jnp.zeros((), weights.dtype)
    # Zero the masked differences before squaring so a padded slot (even NaN) has no gradient.
    diff = jnp.where(valid[:, None, None], diff, jnp.zeros((), jnp.float32))
    total = jnp.sum(jnp.square(diff))
    return total / jnp.maximum(jnp.sum(valid, dtype=jnp.float32), 1.0)
