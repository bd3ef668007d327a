"""The demonstration pipeline behind ``jaxpick demo``: every stage that exists, on simulated data.

Stages so far (each later capability adds its own):

1. simulate a small dataset with exact ground truth and write it (MRC micrographs with pixel
   size, even/odd half-dose pairs, ground truth as a Topaz coordinate file);
2. read every micrograph back and check it equals what was simulated, bit for bit;
3. convert the ground truth into every coordinate format jaxpick writes (RELION STAR, EMAN box
   and EMAN2 json, crYOLO cbox, cryoSPARC cs, CSV, Topaz's VIA CSV), read each back and measure
   how far the centres moved;
4. draw the ground truth on the first micrograph (``overlay.png``);
5. preprocess the micrographs as ``jaxpick preprocess`` does (Fourier-crop downsampling by 2
   and Topaz's GMM normalisation) and check the background comes out at mean 0, std 1;
6. train a picker (``jaxpick train``: resnet8, GE-binomial, from Topaz's pretrained weights
   when topaz-em is installed, else from scratch) on three quarters of the micrographs with 40 %
   of their particles labelled, testing on the rest after every epoch (``training_curve.tsv`` and
   ``training_curve.png``);
7. pick particles on the held-out micrographs with the trained model (``jaxpick extract``),
   evaluate the picks against the ground truth (AUPRC, ``precision_recall.png``), draw them
   (``picks.png``), and compare with Topaz's pretrained resnet16 on the same micrographs;
8. save everything it measured in ``results.json`` and print a summary.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from jaxpick.config import ConvertConfig, DemoConfig, ExtractConfig, PreprocessConfig
from jaxpick.convert import convert_coordinates
from jaxpick.errors import JaxpickError
from jaxpick.io.atomic import write_text_atomic
from jaxpick.io.coords import Coordinates, read_coordinates, read_many
from jaxpick.io.image import read_image
from jaxpick.plot import GREEN, MAGENTA, overlay_picks, plot_precision_recall
from jaxpick.simulate import SimulationConfig, iter_dataset, write_dataset

# Downsampling factor of the preprocessing stage.
_SCALE = 2
# Fraction of the training micrographs' particles that are labelled.
_LABELLED = 0.4

# (format, output name, extra convert options): every format jaxpick writes.
_CONVERSIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("star", "particles.star", {}),
    ("box", "box/", {"box_size": 0}),
    ("json", "eman2/", {}),
    ("cbox", "cryolo/", {"box_size": 0}),
    ("cs", "particles.cs", {}),
    ("csv", "particles.csv", {}),
    ("via", "particles_via.csv", {}),
)


class _Quiet:
    """A log that keeps the trainer's statistics lines out of the demo's summary."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@dataclass
class DemoResult:
    """What the demo measured; ``results.json`` holds the same."""

    output_dir: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"output_dir": str(self.output_dir), "stages": self.stages}, indent=2)


def _match_error(truth: Coordinates, other: Coordinates) -> float:
    """Largest distance between a true centre and the same particle read back (same order)."""
    if len(truth) != len(other):
        raise JaxpickError(f"expected {len(truth)} particles, read back {len(other)}")
    if len(truth) == 0:
        return 0.0
    order_t = np.lexsort((truth.y, truth.x, truth.image_name))
    order_o = np.lexsort((other.y, other.x, other.image_name))
    if not np.array_equal(truth.image_name[order_t], other.image_name[order_o]):
        raise JaxpickError("image names changed on the way through the conversion")
    dx = truth.x[order_t] - other.x[order_o]
    dy = truth.y[order_t] - other.y[order_o]
    return float(np.max(np.hypot(dx, dy)))


def run_demo(config: DemoConfig, *, log: TextIO | None = None) -> DemoResult:
    """Runs every stage on a simulated dataset under ``config.output_dir``.

    Args:
      config: sizes, difficulty, seed and the output folder.
      log: where progress lines go (default standard output).

    Returns:
      The measurements (also written to ``<output_dir>/results.json``).

    Raises:
      JaxpickError: if a stage produces something other than what went in.
    """
    out = Path(config.output_dir)
    stream = log or sys.stdout
    result = DemoResult(output_dir=out)

    def stage(name: str, run: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        facts = run()
        facts["seconds"] = round(time.perf_counter() - start, 3)
        result.stages[name] = facts
        details = ", ".join(f"{k}={v}" for k, v in facts.items() if not isinstance(v, dict))
        print(f"[{name}] {details}", file=stream, flush=True)

    sim = SimulationConfig.preset(
        config.preset,
        shape=(config.size, config.size),
        seed=config.seed,  # type: ignore[arg-type]
    )
    data_dir = out / "data"
    state: dict[str, Any] = {}

    def simulate() -> dict[str, Any]:
        dataset = write_dataset(
            sim, data_dir, config.num_micrographs, pairs=True, coordinate_formats=("coord",)
        )
        state["dataset"] = dataset
        return {
            "micrographs": len(dataset.micrographs),
            "shape": list(sim.shape),
            "particles": len(dataset.coordinates),
            "preset": config.preset,
            "snr": sim.snr,
            "folder": str(data_dir),
        }

    def read_back() -> dict[str, Any]:
        dataset = state["dataset"]
        kinds = {"micrographs": "image", "even": "even", "odd": "odd", "clean": "clean"}
        checked = 0
        sims = iter_dataset(sim, config.num_micrographs, pairs=True)
        for index, mic in enumerate(sims):
            for folder, attribute in kinds.items():
                path = getattr(dataset, folder)[index]
                image = read_image(path)
                if image.pixel_size is None or abs(image.pixel_size - sim.pixel_size) > 1e-5:
                    raise JaxpickError(
                        f"{path}: pixel size {image.pixel_size}, wrote {sim.pixel_size}"
                    )
                if not np.array_equal(image.data, getattr(mic, attribute)):
                    raise JaxpickError(f"{path}: read back different pixels than were written")
                checked += 1
        truth = read_coordinates(dataset.coordinate_files["coord"][0])
        error = _match_error(dataset.coordinates, truth)
        return {
            "images_identical": checked,
            "pixel_size": sim.pixel_size,
            "coords_max_err_px": error,
        }

    def convert() -> dict[str, Any]:
        dataset = state["dataset"]
        truth_file = str(dataset.coordinate_files["coord"][0])
        conversions = {}
        box = 2 * int(np.ceil(1.5 * sim.particle_radius))
        for fmt, name, extra in _CONVERSIONS:
            target = out / "coordinates" / name
            options: dict[str, Any] = {"box_size": box} if "box_size" in extra else {}
            written = convert_coordinates(
                ConvertConfig(
                    inputs=(truth_file,),
                    output=str(target) + ("/" if name.endswith("/") else ""),
                    to_format=fmt,
                    image_dir=str(data_dir / "micrographs"),
                    **options,
                )
            )
            back = read_many(written, fmt)
            conversions[fmt] = {
                "files": len(written),
                "particles": len(back),
                "max_err_px": round(_match_error(dataset.coordinates, back), 4),
            }
        worst = max(c["max_err_px"] for c in conversions.values())
        return {"formats": len(conversions), "worst_err_px": worst, "per_format": conversions}

    def picture() -> dict[str, Any]:
        dataset = state["dataset"]
        first = dataset.micrographs[0]
        truth = dataset.coordinates.select(dataset.coordinates.image_name == first.stem)
        path = out / "overlay.png"
        xy = np.stack([truth.x, truth.y], axis=1)
        overlay_picks(path, read_image(first).data, [(xy, sim.particle_radius, GREEN)])
        return {"picture": str(path), "particles_drawn": len(truth)}

    def preprocess() -> dict[str, Any]:
        from jaxpick.preprocess import preprocess as run_preprocess

        dataset = state["dataset"]
        scale = _SCALE
        dest = out / "preprocessed"
        report = run_preprocess(
            PreprocessConfig(
                inputs=tuple(str(p) for p in dataset.micrographs),
                destdir=str(dest),
                scale=scale,
                metadata=True,
            ),
            progress=False,
        )
        if report.failed:
            raise JaxpickError(f"preprocessing failed: {report.failed}")
        # Background = pixels farther than a particle radius from every true centre.
        means, stds, pixel_sizes = [], [], []
        for path in dataset.micrographs:
            image = read_image(dest / f"{path.stem}.mrc")
            truth = dataset.coordinates.select(dataset.coordinates.image_name == path.stem)
            rows, cols = np.indices(image.data.shape)
            background = np.ones(image.data.shape, bool)
            for x, y in zip(truth.x / scale, truth.y / scale, strict=True):
                near = (rows - y) ** 2 + (cols - x) ** 2 <= (sim.particle_radius / scale) ** 2
                background &= ~near
            means.append(float(image.data[background].mean()))
            stds.append(float(image.data[background].std()))
            pixel_sizes.append(image.pixel_size)
        state["preprocessed"] = dest
        return {
            "micrographs": len(report.done),
            "scale": scale,
            "pixel_size": pixel_sizes[0],
            "background_mean": round(float(np.mean(means)), 4),
            "background_std": round(float(np.mean(stds)), 4),
            "folder": str(dest),
        }

    def split_names() -> tuple[list[Path], list[Path]]:
        micrographs = state["dataset"].micrographs
        held_out = max(1, len(micrographs) // 4)
        return list(micrographs[:-held_out]), list(micrographs[-held_out:])

    def train() -> dict[str, Any]:
        from jaxpick.checkpoint import pretrained_path
        from jaxpick.config import TrainConfig
        from jaxpick.errors import FileFormatError
        from jaxpick.io.coords import write_coordinates
        from jaxpick.train import train as run_train

        dataset = state["dataset"]
        dest: Path = state["preprocessed"]
        training, held_out = split_names()
        # Label a random 40 % of the particles of the training micrographs (PU learning: the
        # rest stay unlabelled); the held-out micrographs keep all theirs, for testing.
        truth = dataset.coordinates.scaled(down=_SCALE)
        rng = np.random.default_rng(config_seed)
        held = np.isin(truth.image_name, [p.stem for p in held_out])
        labelled = held | (rng.random(len(truth)) < _LABELLED)
        labels = out / "train_particles.txt"
        write_coordinates(truth.select(labelled), labels, "coord")
        try:
            pretrained_path("resnet8_u32")
            pretrained = True
        except FileFormatError:
            pretrained = False  # train from scratch when topaz-em's weights are not installed
        epochs = 2
        per_micrograph = len(dataset.coordinates) / len(dataset.micrographs)
        config = TrainConfig(
            train_images=tuple(str(dest / f"{p.stem}.mrc") for p in training),
            train_targets=(str(labels),),
            test_images=tuple(str(dest / f"{p.stem}.mrc") for p in held_out),
            test_targets=(str(labels),),
            num_particles=per_micrograph,
            radius=3,
            method="GE-binomial",
            model="resnet8",
            units=32,
            pretrained=pretrained,
            minibatch_size=config_minibatch,
            epoch_size=max(1, config_steps // epochs),
            num_epochs=epochs,
            save_prefix=str(out / "model" / "demo"),
            output=str(out / "training_curve.tsv"),
            eval_radius=_pick_radius(),
            seed=config_seed,
            device=-1,
        )
        result = run_train(config, progress=False, log=_Quiet())
        state["model"] = result.checkpoints[-1]
        test = result.test_rows()[-1]
        return {
            "model": "resnet8_u32 " + ("from Topaz's pretrained weights" if pretrained else "new"),
            "method": result.method,
            "pi": round(result.pi, 6),
            "updates": config.epoch_size * epochs,
            "minibatch": config.minibatch_size,
            "labelled_particles": int(np.sum(labelled & ~held)),
            "training_micrographs": len(training),
            "held_out_micrographs": len(held_out),
            "test_pixel_auprc": round(float(test["auprc"]), 4),
            "test_particle_auprc": round(float(test["particle_auprc"]), 4),
            "checkpoint": str(result.checkpoints[-1]),
            "pictures": [str(out / "training_curve.png")],
        }

    def pick() -> dict[str, Any]:
        from jaxpick.checkpoint import pretrained_path
        from jaxpick.errors import FileFormatError
        from jaxpick.extract import extract
        from jaxpick.metrics import evaluate_picks

        dataset = state["dataset"]
        dest: Path = state["preprocessed"]
        _, held_out = split_names()
        names = {p.stem for p in held_out}
        truth = dataset.coordinates.select(np.isin(dataset.coordinates.image_name, sorted(names)))
        radius = _pick_radius()

        def run(model: str, picks_file: Path) -> tuple[Coordinates, Any]:
            result = extract(
                ExtractConfig(
                    inputs=tuple(str(dest / f"{p.stem}.mrc") for p in held_out),
                    model=model,
                    radius=radius,
                    threshold=-6.0,
                    up_scale=_SCALE,
                    output=str(picks_file),
                    overwrite=True,
                    device=-1,
                ),
                progress=False,
            )
            if result.report.failed:
                raise JaxpickError(f"extraction failed: {result.report.failed}")
            picks = read_coordinates(picks_file, "coord")
            return picks, evaluate_picks(truth, picks, sim.particle_radius)

        picks, evaluation = run(str(state["model"]), out / "picks.txt")
        curve = evaluation.curve
        facts: dict[str, Any] = {
            "model": "trained (stage train)",
            "radius": radius,
            "micrographs": len(held_out),
            "picks": len(picks),
            "auprc": round(curve.auprc, 4),
            "hits": evaluation.num_hits,
            "targets": evaluation.num_targets,
        }
        try:
            pretrained_path("resnet16")
            _, baseline = run("resnet16", out / "picks_pretrained_resnet16.txt")
            facts["pretrained_resnet16_auprc"] = round(baseline.curve.auprc, 4)
        except FileFormatError:
            facts["pretrained_resnet16_auprc"] = "skipped: topaz-em weights not installed"
        plot_precision_recall(
            out / "precision_recall.png",
            curve.recall,
            curve.precision,
            title=f"trained resnet8 on held-out micrographs: AUPRC {curve.auprc:.3f}",
        )
        first = held_out[0]
        mine = picks.select(picks.image_name == first.stem)
        on_first = truth.select(truth.image_name == first.stem)
        assert mine.score is not None
        order = np.argsort(-mine.score)[: len(on_first)]  # as many as there are particles
        overlay_picks(
            out / "picks.png",
            read_image(first).data,
            [
                (np.stack([on_first.x, on_first.y], axis=1), sim.particle_radius, GREEN),
                (np.stack([mine.x[order], mine.y[order]], axis=1), sim.particle_radius, MAGENTA),
            ],
        )
        facts["pictures"] = [str(out / "precision_recall.png"), str(out / "picks.png")]
        return facts

    def _pick_radius() -> int:
        return max(1, round(sim.particle_radius / _SCALE))

    config_steps, config_minibatch, config_seed = (
        config.train_steps,
        config.minibatch_size,
        config.seed,
    )

    stage("simulate", simulate)
    stage("read-back", read_back)
    stage("convert", convert)
    stage("picture", picture)
    stage("preprocess", preprocess)
    stage("train", train)
    stage("pick", pick)
    write_text_atomic(out / "results.json", result.to_json() + "\n")
    print(f"results: {out / 'results.json'}", file=stream)
    return result
