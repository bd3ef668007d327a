"""EMPIAR-10028 (CryoPPP, as 1024² PNGs with disc masks) prepared for the training benches.

``../shared/data/real/prompt_sam_cryoppp/10028`` has 4 training micrographs and 1 validation
micrograph, each with a mask holding a filled disc (r ≈ 28 px) at every curated particle. This
module recovers the particle centres from the masks (peaks of the distance transform, at least
``min_separation`` px apart), preprocesses the micrographs once with ``jaxpick preprocess``
(Fourier-crop downsampling and GMM normalisation, written as MRC so Topaz reads them too), and
writes the centres at the downsampled scale as Topaz coordinate tables.

    python -m bench.quality_data        # prints the recovered particle counts per micrograph
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.harness import SHARED

DATA = SHARED / "data" / "real" / "prompt_sam_cryoppp" / "10028"
MASK_RADIUS = 28  # px at 1024² (CryoPPP diameter 224 px / 4), see PROVENANCE.md


def recover_centres(
    mask_path: str | os.PathLike[str], *, min_separation: int = 20, min_depth: float = 10.0
) -> np.ndarray:
    """Particle centres ``[n, 2]`` (x, y; float, pixels of the mask) from a disc mask.

    A centre is a local maximum of the Euclidean distance transform of the mask (within a disc
    of ``min_separation`` px) at least ``min_depth`` px inside it; a plateau of equal maxima
    counts once, at its centroid. Overlapping discs still give one peak each as long as their
    centres are more than ``min_separation`` apart.
    """
    from scipy import ndimage as ndi

    from jaxpick.io.image import read_image

    mask = read_image(mask_path).data > 127
    depth = ndi.distance_transform_edt(mask)
    d = np.arange(-min_separation, min_separation + 1)
    footprint = d[:, None] ** 2 + d[None, :] ** 2 <= min_separation**2
    local_max = ndi.maximum_filter(depth, footprint=footprint, mode="constant")
    peaks = (depth == local_max) & (depth >= min_depth)
    labels, count = ndi.label(peaks, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros((0, 2))
    yx = np.asarray(ndi.center_of_mass(peaks, labels, range(1, count + 1)), dtype=np.float64)
    return yx[:, ::-1].copy()


def write_targets(path: Path, centres: dict[str, np.ndarray]) -> int:
    """Writes a Topaz coordinate table (image_name, x_coord, y_coord; integers); returns rows."""
    lines = ["image_name\tx_coord\ty_coord"]
    for name in sorted(centres):
        for x, y in np.asarray(centres[name]).reshape(-1, 2):
            lines.append(f"{name}\t{int(x)}\t{int(y)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def sample_particles(
    centres: dict[str, np.ndarray], n: int | None, seed: int
) -> dict[str, np.ndarray]:
    """``n`` particles drawn without replacement over all micrographs (None or ≥ total: all)."""
    names = sorted(centres)
    owner = np.concatenate([np.full(len(centres[k]), i) for i, k in enumerate(names)])
    rows = np.concatenate([np.arange(len(centres[k])) for k in names])
    total = len(owner)
    if n is None or n >= total:
        return {k: centres[k].copy() for k in names}
    pick = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    return {k: centres[k][rows[pick][owner[pick] == i]] for i, k in enumerate(names)}


@dataclass
class Prepared:
    """The preprocessed dataset: MRC folders, centres at the downsampled scale, targets files."""

    scale: int
    shape: tuple[int, int]
    train_dir: Path
    valid_dir: Path
    train_images: list[Path]
    valid_images: list[Path]
    train_centres: dict[str, np.ndarray] = field(default_factory=dict)
    valid_centres: dict[str, np.ndarray] = field(default_factory=dict)
    train_targets: Path = Path()
    valid_targets: Path = Path()
    prep_seconds: float = 0.0

    @property
    def num_train_particles(self) -> int:
        return sum(len(v) for v in self.train_centres.values())

    @property
    def mean_particles(self) -> float:
        """True mean particles per training micrograph (Topaz's ``-n``)."""
        return self.num_train_particles / len(self.train_centres)


def _downscaled(centres: np.ndarray, scale: int, shape: tuple[int, int]) -> np.ndarray:
    # Topaz's convention for -s: round(coord / s); kept inside the image.
    out = np.round(centres / scale)
    out[:, 0] = np.clip(out[:, 0], 0, shape[1] - 1)
    out[:, 1] = np.clip(out[:, 1], 0, shape[0] - 1)
    return out


def prepare(
    workdir: Path,
    *,
    scale: int = 4,
    threads: int = 2,
    jaxpick_cli: str | None = None,
    check_counts: bool = True,
) -> Prepared:
    """Preprocesses the 10028 train and valid micrographs with ``jaxpick preprocess -s scale``
    into ``workdir/{train,valid}/*.mrc`` and writes ``workdir/{train,valid}_targets.txt``."""
    import time

    from jaxpick.io.image import image_shape

    cli = jaxpick_cli or str(Path(sys.executable).parent / "jaxpick")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    folders = {}
    for split in ("train", "valid"):
        pngs = sorted((DATA / split / "images").glob("*.png"))
        if not pngs:
            raise SystemExit(f"no micrographs under {DATA / split / 'images'}")
        out = workdir / split
        argv = [cli, "preprocess", "-s", str(scale), "-o", str(out), "-d", "-1"]
        argv += ["-j", str(threads), *map(str, pngs)]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"jaxpick preprocess failed:\n{proc.stderr[-3000:]}")
        folders[split] = (out, pngs)
    prep_seconds = time.perf_counter() - start

    train_images = sorted(folders["train"][0].glob("*.mrc"))
    valid_images = sorted(folders["valid"][0].glob("*.mrc"))
    shape = tuple(image_shape(train_images[0])[-2:])
    prepared = Prepared(
        scale=scale,
        shape=shape,  # type: ignore[arg-type]
        train_dir=folders["train"][0],
        valid_dir=folders["valid"][0],
        train_images=train_images,
        valid_images=valid_images,
        prep_seconds=prep_seconds,
    )
    for split, target in (("train", prepared.train_centres), ("valid", prepared.valid_centres)):
        for png in folders[split][1]:
            centres = recover_centres(DATA / split / "labels" / png.name)
            if check_counts and not 60 <= len(centres) <= 110:
                raise RuntimeError(
                    f"{png.name}: recovered {len(centres)} particles from its mask; "
                    "expected about 75-98 (PROVENANCE.md)"
                )
            target[png.stem] = _downscaled(centres, scale, shape)
    prepared.train_targets = workdir / "train_targets.txt"
    prepared.valid_targets = workdir / "valid_targets.txt"
    write_targets(prepared.train_targets, prepared.train_centres)
    write_targets(prepared.valid_targets, prepared.valid_centres)
    return prepared


def main() -> int:
    for split in ("train", "valid"):
        for mask in sorted((DATA / split / "labels").glob("*.png")):
            centres = recover_centres(mask)
            print(f"{split:<6} {mask.stem:<12} {len(centres):>4} particles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
