"""Regenerates the Topaz model fixtures: score maps of Topaz's detectors and small saved models.

Run with a Python environment that has Topaz and torch installed (jaxpick is not needed), from
the repository root::

    /path/to/topaz-venv/bin/python tests/data/make_topaz_model_fixtures.py

Produced with topaz-em 0.3.20 and torch 2.13 (CPU). ``tests/models/test_topaz_parity.py`` and
``tests/io/test_torch_sav.py`` compare jaxpick with these files, so the tests never need torch.

Writes, under ``tests/data/``:

* ``topaz_models.npz``:

  - ``input``: a 96 x 112 float32 crop of the real micrograph
    ``../shared/data/real/micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc`` (8x binned), normalised
    with ``topaz.stats.normalize`` (GMM, as ``topaz preprocess``), or a seeded synthetic image
    when that file is absent (``input_source`` says which);
  - ``pretrained_{name}``: the score map of each bundled detector (``topaz.model.factory.
    load_model(name)``, ``eval()`` + ``fill()``, i.e. what ``topaz extract`` computes) on it,
    and ``pretrained_{name}_sha256`` the digest of the weights file used;
  - for each user model ``{m}`` in ``USER_MODELS``: ``{m}_dense`` (filled/eval score map on
    ``input[:64, :80]``, if the model's filled mode is sound, see below) and ``{m}_patch``, the
    eval-mode patch logits of the receptive-field crops of ``input[:64, :80]`` (zero-padded)
    centred at ``crop_centres`` (see `crops`);
  - ``train_*``: one training-mode forward pass of ``r8_u8_bn_max`` on the crops of
    ``input[10:, 20:] * 1.5 + 0.25`` at ``crop_centres``: the logits and the running mean/var of
    its first BN after the update.

* ``topaz_models/{m}.sav``: each user model saved as ``topaz train`` saves it
  (``torch.save(classifier)``, a whole pickled ``LinearClassifier``, zip serialisation), with
  random weights, random BN affine parameters / PReLU slopes and BN running statistics made
  non-trivial by two training-mode forward passes; ``c63_u4_nobn_legacy.sav`` is the same model
  as ``c63_u4_nobn.sav`` in the legacy (pre-1.6, non-zip) serialisation; ``c31_u4_ae.sav``
  carries an autoencoder (``generative.*``) as ``topaz train --autoencoder`` attaches it.
  The weights are random (seeded), but the files differ from run to run in the serialisation
  id torch writes into them.

* ``topaz_models/tensors_{zip,legacy}.pt`` and ``tensors.npz``: a state dict of tensors with
  several dtypes, a transposed (non-contiguous) view and a view at a storage offset, in both
  serialisations, with the expected arrays.

Topaz's filled (dense) mode is wrong for conv31/63/127 with max pooling (the pools' padding is
not scaled with their dilation, so the map shrinks and shifts) and with dropout > 0 (its
stride table skips the dropout modules); the fixtures include such a model for patch mode only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import topaz
import torch
from topaz.model.classifier import LinearClassifier
from topaz.model.factory import get_feature_extractor, load_model
from topaz.model.generative import ConvGenerator

HERE = Path(__file__).resolve().parent
OUT = HERE / "topaz_models.npz"
MODEL_DIR = HERE / "topaz_models"
MICROGRAPH = HERE.parents[2] / "shared/data/real/micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc"
PRETRAINED = ("resnet8_u32", "resnet8_u64", "resnet16_u32", "resnet16_u64")

# name -> (architecture, feature-extractor keyword arguments, filled mode is sound,
#          autoencoder units (0: none; else a ConvGenerator is attached as `topaz train
#          --autoencoder w --ngf units` does))
USER_MODELS = {
    "r8_u8_bn_max": ("resnet8", dict(units=8, bn=True, pooling="max"), True, 0),
    "r16_u8_bn": ("resnet16", dict(units=8, bn=True), True, 0),
    "r6_u8_bn": ("resnet6", dict(units=8, bn=True), True, 0),
    "r8_u4_nobn_drop": ("resnet8", dict(units=4, bn=False, dropout=0.2), True, 0),
    "c31_u8_bn": ("conv31", dict(units=8, bn=True), True, 0),
    "c63_u4_nobn": ("conv63", dict(units=4, bn=False, unit_scaling=2), True, 0),
    "c31_u4_bn_max_drop": ("conv31", dict(units=4, bn=True, pooling="max", dropout=0.1), False, 0),
    "c31_u4_ae": ("conv31", dict(units=4, bn=True, unit_scaling=3), True, 2),
}


def make_input() -> tuple[np.ndarray, str]:
    if MICROGRAPH.exists():
        import mrcfile
        from topaz.stats import normalize

        with mrcfile.open(MICROGRAPH, permissive=True) as mrc:
            image = np.asarray(mrc.data, dtype=np.float32)
        image, _ = normalize(image, sample=1)  # sample=1: deterministic (no subsampling)
        y, x = 420, 440
        return np.ascontiguousarray(image[y : y + 96, x : x + 112], np.float32), MICROGRAPH.name
    rng = np.random.default_rng(20250101)
    return rng.normal(size=(96, 112)).astype(np.float32), "synthetic"


def score_filled(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    model.eval()
    model.fill()
    with torch.no_grad():
        out = model(torch.from_numpy(image)[None, None])
    model.unfill()
    return out[0, 0].numpy().astype(np.float32)


CROP_CENTRES = np.array([(0, 0), (10, 70), (47, 13), (63, 79)])


def crops(image: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` crops of the zero-padded image centred at ``CROP_CENTRES``."""
    pad = size // 2
    padded = np.pad(image, pad)
    return np.stack([padded[y : y + size, x : x + size] for y, x in CROP_CENTRES]).astype(
        np.float32
    )


def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Trained-looking parameters: BN affine and PReLU slopes away from their init values."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.2, 0.2, generator=generator)
            elif isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(0.05, 0.5, generator=generator)


def make_user_model(
    arch: str, kwargs: dict, image: np.ndarray, seed: int, ngf: int
) -> LinearClassifier:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    kwargs = dict(dropout=0.0, unit_scaling=2, pooling=None, dims=2) | kwargs
    features = get_feature_extractor(arch, **kwargs)
    model = LinearClassifier(features, dims=2, patch_size=None, padding=None, batch_size=4)
    if ngf:  # as topaz/training.py::make_model does for --autoencoder > 0
        depth = int(np.log2(model.width + 1) - 3)
        model.generative = ConvGenerator(model.latent_dim, units=ngf, depth=depth)
    randomise(model, generator)
    model.train()
    width = model.width
    batch = torch.from_numpy(crops(image, width))
    with torch.no_grad():
        for _ in range(2):
            model(batch + 0.5 * torch.randn(batch.shape, generator=generator))
    model.eval()
    return model


def tensors_state_dict() -> tuple[OrderedDict, dict[str, np.ndarray]]:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = OrderedDict(
        [
            ("float32", torch.linspace(-1, 1, 7)),
            ("float64", torch.tensor([[1.5, -2.25], [3.0, 1e-300]], dtype=torch.float64)),
            ("float16", torch.tensor([0.5, -65504.0, 1e-3], dtype=torch.float16)),
            ("int64", torch.tensor([-(2**40), 0, 7], dtype=torch.int64)),
            ("uint8", torch.tensor([0, 255, 17], dtype=torch.uint8)),
            ("bool", torch.tensor([True, False, True])),
            ("scalar", torch.tensor(3.25)),
            ("transposed", base.t()),  # strides (1, 6)
            ("offset_view", base[1:3, 2:5]),  # storage offset 8, strides (6, 1)
            ("base", base),
        ]
    )
    expected = {k: v.numpy().copy() for k, v in state.items()}
    return state, expected


def main() -> None:
    torch.set_num_threads(2)
    MODEL_DIR.mkdir(exist_ok=True)
    image, source = make_input()
    arrays: dict[str, np.ndarray] = {
        "input": image,
        "input_source": np.array(source),
        "crop_centres": CROP_CENTRES,
    }

    package = Path(topaz.__file__).parent / "pretrained" / "detector"
    for name in PRETRAINED:
        weights = package / f"{name}.sav"
        arrays[f"pretrained_{name}"] = score_filled(load_model(name), image)
        arrays[f"pretrained_{name}_sha256"] = np.array(
            hashlib.sha256(weights.read_bytes()).hexdigest()
        )

    small = np.ascontiguousarray(image[:64, :80])
    for seed, (name, (arch, kwargs, filled_ok, ngf)) in enumerate(USER_MODELS.items()):
        model = make_user_model(arch, kwargs, image, seed, ngf)
        torch.save(model, MODEL_DIR / f"{name}.sav")
        if name == "c63_u4_nobn":
            torch.save(
                model, MODEL_DIR / f"{name}_legacy.sav", _use_new_zipfile_serialization=False
            )
        batch = crops(small, model.width)
        with torch.no_grad():
            arrays[f"{name}_patch"] = model(torch.from_numpy(batch))[:, 0, 0, 0].numpy()
        if filled_ok:
            arrays[f"{name}_dense"] = score_filled(model, small)
        if name == "r8_u8_bn_max":
            train_batch = crops(image[10:, 20:], model.width) * 1.5 + 0.25
            model.train()
            with torch.no_grad():
                logits = model(torch.from_numpy(train_batch))[:, 0, 0, 0].numpy()
            bn = model.features.features[0].bn
            arrays["train_model"] = np.array(name)
            arrays["train_logits"] = logits
            arrays["train_bn0_running_mean"] = bn.running_mean.numpy().copy()
            arrays["train_bn0_running_var"] = bn.running_var.numpy().copy()

    state, expected = tensors_state_dict()
    torch.save(state, MODEL_DIR / "tensors_zip.pt")
    torch.save(state, MODEL_DIR / "tensors_legacy.pt", _use_new_zipfile_serialization=False)
    np.savez(HERE / "tensors.npz", **expected)
    np.savez(OUT, **arrays)
    total = sum(p.stat().st_size for p in [OUT, HERE / "tensors.npz", *MODEL_DIR.iterdir()])
    print(
        f"wrote {OUT.name}, tensors.npz and {len(list(MODEL_DIR.iterdir()))} files: {total:,} bytes"
    )


if __name__ == "__main__":
    main()
