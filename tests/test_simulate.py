"""Tests of the micrograph simulator: determinism, ground truth, SNR, pairs, distractors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from jaxpick.errors import JaxpickError
from jaxpick.simulate import (
    CTF,
    PRESETS,
    ParticleModel,
    SimulatedMicrograph,
    SimulationConfig,
    defocus_to_pixels,
    micrograph_seed,
    particle_models,
    random_rotations,
    simulate_dataset,
    simulate_micrograph,
    simulate_pair,
)

SMALL = SimulationConfig(shape=(192, 256), num_particles=20, particle_radius=10.0)


def _disk_union(shape: tuple[int, int], centers: np.ndarray, radius: float) -> np.ndarray:
    """The particle disks, computed independently of the simulator (brute force over all pixels)."""
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, dtype=bool)
    for x, y in centers:
        mask |= (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
    return mask


def _arrays(mic: SimulatedMicrograph) -> list[np.ndarray]:
    return [mic.image, mic.clean, mic.centers, mic.rotations, mic.species, mic.ice_blobs]


# --------------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_output() -> None:
    config = dataclasses.replace(SMALL, ice_blobs=2, ice_gradient=1.0, carbon_edge=1.0)
    a = simulate_pair(config, seed=11)
    b = simulate_pair(config, seed=11)
    for x, y in zip(_arrays(a) + [a.even, a.odd], _arrays(b) + [b.even, b.odd], strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.ctf == b.ctf
    assert a.carbon == b.carbon


def test_different_seeds_differ() -> None:
    a = simulate_micrograph(SMALL, seed=1)
    b = simulate_micrograph(SMALL, seed=2)
    assert not np.array_equal(a.centers, b.centers)
    assert not np.array_equal(a.image, b.image)


def test_config_seed_is_the_default_and_seed_sequences_are_not_consumed() -> None:
    config = dataclasses.replace(SMALL, seed=5)
    np.testing.assert_array_equal(
        simulate_micrograph(config).image, simulate_micrograph(SMALL, seed=5).image
    )
    sequence = np.random.SeedSequence(42)
    first = simulate_micrograph(SMALL, seed=sequence)
    np.testing.assert_array_equal(first.image, simulate_micrograph(SMALL, seed=sequence).image)


def test_generator_seed_is_consumed() -> None:
    rng = np.random.default_rng(3)
    a = simulate_micrograph(SMALL, seed=rng)
    b = simulate_micrograph(SMALL, seed=rng)
    assert not np.array_equal(a.image, b.image)
    again = simulate_micrograph(SMALL, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(a.image, again.image)


def test_micrograph_k_does_not_depend_on_dataset_length() -> None:
    config = dataclasses.replace(SMALL, shape=(96, 128), num_particles=5)
    short = simulate_dataset(config, 3, seed=9)
    long = simulate_dataset(config, 5, seed=9)
    sliced = simulate_dataset(config, 2, seed=9, start=2)
    alone = simulate_micrograph(config, seed=micrograph_seed(9, 2))
    for other in (long[2], sliced[0], alone):
        np.testing.assert_array_equal(short[2].image, other.image)
        np.testing.assert_array_equal(short[2].centers, other.centers)
    # Distinct micrographs within one dataset.
    assert not np.array_equal(short[0].image, short[1].image)
    assert not np.array_equal(short[1].centers, short[2].centers)


def test_distractors_leave_particles_ctf_and_noise_unchanged() -> None:
    # Independent streams: adding ice lets a benchmark compare "with" and "without" on the same
    # particles, and makes the difference of the two clean images exactly the distractors.
    plain = simulate_micrograph(SMALL, seed=4)
    iced = simulate_micrograph(dataclasses.replace(SMALL, ice_blobs=3, ice_gradient=1.5), seed=4)
    np.testing.assert_array_equal(plain.centers, iced.centers)
    np.testing.assert_array_equal(plain.rotations, iced.rotations)
    assert plain.ctf == iced.ctf
    np.testing.assert_allclose(iced.image - iced.clean, plain.image - plain.clean, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_centres_inside_separated_and_complete(seed: int) -> None:
    mic = simulate_micrograph(SMALL, seed=seed)
    ny, nx = SMALL.shape
    radius = SMALL.particle_radius
    assert mic.centers.shape == (SMALL.num_particles, 2)  # plenty of room: all placed
    assert mic.centers.dtype == np.float64
    x, y = mic.centers.T
    assert (x >= radius).all()
    assert (x <= nx - 1 - radius).all()
    assert (y >= radius).all()
    assert (y <= ny - 1 - radius).all()
    distances = np.linalg.norm(mic.centers[:, None] - mic.centers[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() >= SMALL.separation
    assert mic.rotations.shape == (SMALL.num_particles, 3, 3)
    assert mic.species.shape == (SMALL.num_particles,)


def test_custom_separation_is_respected() -> None:
    config = dataclasses.replace(SMALL, num_particles=15, min_separation=35.0)
    mic = simulate_micrograph(config, seed=0)
    distances = np.linalg.norm(mic.centers[:, None] - mic.centers[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() >= 35.0


def test_overfull_request_places_fewer_without_overlap() -> None:
    config = SimulationConfig(shape=(96, 96), num_particles=200, particle_radius=8.0)
    mic = simulate_micrograph(config, seed=0)
    # At most (96 - 16)² / (π 8²) ≈ 32 disks of radius 8 fit; random placement jams well below.
    assert 5 < mic.num_particles < 32
    distances = np.linalg.norm(mic.centers[:, None] - mic.centers[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() >= 16.0


def test_partial_particles_keep_centres_inside() -> None:
    config = dataclasses.replace(SMALL, num_particles=60, allow_partial=True, particle_radius=6.0)
    mic = simulate_micrograph(config, seed=1)
    ny, nx = config.shape
    x, y = mic.centers.T
    assert ((x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)).all()
    near_border = np.minimum.reduce([x, y, nx - 1 - x, ny - 1 - y]) < config.particle_radius
    assert near_border.any()  # the option does let particles reach the border


def test_particles_are_where_the_centres_say() -> None:
    config = dataclasses.replace(SMALL, num_particles=12)
    mic = simulate_micrograph(config, seed=3)
    energy = mic.clean.astype(np.float64) ** 2
    radius = config.particle_radius
    # Local energy at the centres is far above the image median...
    rows, cols = np.indices(config.shape)
    local = [
        energy[(cols - x) ** 2 + (rows - y) ** 2 <= (radius / 2) ** 2].mean()
        for x, y in mic.centers
    ]
    assert min(local) > 50 * np.median(energy)
    # ...and almost all of the energy lies within the particle disks and their CTF fringes.
    near = _disk_union(config.shape, mic.centers, 2 * radius)
    assert energy[near].sum() > 0.97 * energy.sum()


def test_ground_truth_agrees_with_matched_filter() -> None:
    # Correlating with the particle's rotational average (after the same CTF) peaks at the centres.
    config = dataclasses.replace(SMALL, num_particles=10, snr=1.0)
    mic = simulate_micrograph(config, seed=5)
    model = particle_models(config)[0]
    template = model.project(random_rotations(np.random.default_rng(0), 64), size=41).mean(axis=0)
    padded = np.zeros(config.shape)
    padded[:41, :41] = template
    padded = np.roll(padded, (-20, -20), axis=(0, 1))
    transfer = mic.ctf.rfft_filter(config.shape)
    spectrum = np.fft.rfft2(mic.image) * np.conj(np.fft.rfft2(padded) * transfer)
    score = np.fft.irfft2(spectrum, s=config.shape)
    order = np.argsort(score, axis=None)[::-1]
    peaks: list[tuple[int, int]] = []
    for flat in order:  # greedy NMS of radius 10 for the top 10 peaks
        r, c = divmod(int(flat), config.shape[1])
        if all((r - pr) ** 2 + (c - pc) ** 2 > 100 for pr, pc in peaks):
            peaks.append((r, c))
        if len(peaks) == 10:
            break
    found = np.array([(c, r) for r, c in peaks], dtype=np.float64)
    distances = np.linalg.norm(found[:, None] - mic.centers[None], axis=-1)
    # Every peak is within 3 px of a centre (a round template on an asymmetric particle peaks
    # near, not exactly at, its centre of mass), and every centre is found once.
    assert (distances.min(axis=1) <= 3.0).all()
    assert len(set(distances.argmin(axis=1).tolist())) == 10


def test_x_and_y_are_not_swapped_on_a_non_square_image() -> None:
    # Without defocus the CTF is a constant times a symmetric envelope, so the signed centroid of
    # the clean image is the particle's projected centre of mass: exactly its centre.
    config = SimulationConfig(shape=(96, 160), defocus=(0.0, 0.0), particle_radius=10.0)
    for x, y in [(120.3, 30.7), (25.6, 70.2)]:
        mic = simulate_micrograph(config, seed=0, centers=[[x, y]])
        rows, cols = np.indices(config.shape)
        mass = mic.clean.astype(np.float64)
        assert mass.sum() < 0  # density is dark (negative) under focus, as in raw micrographs
        assert (mass * cols).sum() / mass.sum() == pytest.approx(x, abs=0.02)
        assert (mass * rows).sum() / mass.sum() == pytest.approx(y, abs=0.02)
        darkest = np.unravel_index(np.argmin(mic.clean), config.shape)
        assert abs(darkest[0] - y) <= config.particle_radius
        assert abs(darkest[1] - x) <= config.particle_radius


def test_given_centres_outside_the_image_are_rejected() -> None:
    with pytest.raises(ValueError, match="centers"):
        simulate_micrograph(SMALL, seed=0, centers=[[300.0, 10.0]])  # x beyond the 256 columns


def test_particles_render_within_radius() -> None:
    model = ParticleModel.random(9.0, seed=3)
    extent = np.linalg.norm(model.positions, axis=1) + 2 * model.sigmas
    assert extent.max() <= 9.0 + 1e-9
    centre_of_mass = model.masses @ model.positions / model.masses.sum()
    np.testing.assert_allclose(centre_of_mass, 0.0, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# Orientations and the particle object
# --------------------------------------------------------------------------------------------------


def test_random_rotations_are_proper_and_uniform() -> None:
    rotations = random_rotations(np.random.default_rng(0), 4000)
    identity = np.broadcast_to(np.eye(3), rotations.shape)
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), identity, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    # Haar measure: E[R] = 0, and the rotated z axis is uniform on the sphere (E[z_z²] = 1/3).
    assert np.abs(rotations.mean(axis=0)).max() < 0.05
    assert np.mean(rotations[:, 2, 2] ** 2) == pytest.approx(1 / 3, abs=0.03)


def test_projections_depend_on_orientation() -> None:
    model = particle_models(SimulationConfig(particle_radius=12.0))[0]
    projections = model.project(random_rotations(np.random.default_rng(1), 6)).reshape(6, -1)
    correlation = np.corrcoef(projections)
    off_diagonal = correlation[~np.eye(6, dtype=bool)]
    assert off_diagonal.max() < 0.95  # a ball would give 1 everywhere
    # A projection keeps the mass (the patch holds every Gaussian to 4 σ).
    np.testing.assert_allclose(projections.sum(axis=1), model.masses.sum(), rtol=1e-3)


def test_species_are_distinct_and_stable() -> None:
    one = particle_models(SimulationConfig(num_species=1))
    two = particle_models(SimulationConfig(num_species=2))
    np.testing.assert_array_equal(one[0].positions, two[0].positions)
    assert not np.allclose(two[0].positions, two[1].positions)
    mic = simulate_micrograph(dataclasses.replace(SMALL, num_species=2), seed=0)
    assert set(np.unique(mic.species).tolist()) == {0, 1}


def test_projection_offsets_move_the_centroid() -> None:
    model = particle_models(SimulationConfig(particle_radius=8.0))[0]
    rotation = random_rotations(np.random.default_rng(2), 1)
    image = model.project(rotation, size=41, offsets=[[2.25, -3.5]])[0].astype(np.float64)
    rows, cols = np.indices(image.shape)
    assert (image * cols).sum() / image.sum() == pytest.approx(20 + 2.25, abs=1e-3)
    assert (image * rows).sum() / image.sum() == pytest.approx(20 - 3.5, abs=1e-3)


# --------------------------------------------------------------------------------------------------
# CTF
# --------------------------------------------------------------------------------------------------


def test_ctf_values() -> None:
    ctf = CTF(defocus=30.0, amplitude_contrast=0.1, bfactor=0.0)
    assert float(ctf.evaluate(0.0, 0.0)) == pytest.approx(-0.1)
    k_zero = 1.0 / ctf.first_zero
    for angle in (0.0, 1.0, 2.5):
        value = ctf.evaluate(k_zero * math.cos(angle), k_zero * math.sin(angle))
        assert float(value) == pytest.approx(0.0, abs=1e-6)
    assert float(ctf.evaluate(0.6 * k_zero, 0.0)) < 0 < float(ctf.evaluate(1.2 * k_zero, 0.0))
    # Astigmatism: the zero comes first along the direction of the largest defocus.
    tilted = CTF(defocus=30.0, astigmatism=10.0, astigmatism_angle=0.5, amplitude_contrast=0.1)
    k_long = math.sqrt((math.pi - math.asin(0.1)) / (math.pi * 40.0))
    value = tilted.evaluate(k_long * math.cos(0.5), k_long * math.sin(0.5))
    assert float(value) == pytest.approx(0.0, abs=1e-6)
    damped = CTF(defocus=30.0, bfactor=8.0)
    assert float(damped.evaluate(0.5, 0.0)) == pytest.approx(
        float(CTF(defocus=30.0).evaluate(0.5, 0.0)) * math.exp(-0.5), rel=1e-5
    )


def test_ctf_filter_matches_the_fft_grid() -> None:
    ctf = CTF(defocus=20.0, astigmatism=3.0, astigmatism_angle=0.3, bfactor=5.0)
    grid = ctf.rfft_filter((30, 40))
    assert grid.shape == (30, 21)
    assert grid.dtype == np.float32
    ky, kx = np.fft.fftfreq(30)[7], np.fft.rfftfreq(40)[5]
    assert grid[7, 5] == pytest.approx(float(ctf.evaluate(kx, ky)), abs=1e-6)


def test_defocus_conversion() -> None:
    # λ(300 kV) = 0.019687 Å, so 1 µm at 1 Å/px is 196.87 px².
    assert defocus_to_pixels(1.0, pixel_size=1.0) == pytest.approx(196.87, rel=1e-4)
    assert defocus_to_pixels(2.0, pixel_size=4.0) == pytest.approx(2 * 196.87 / 16, rel=1e-4)


def test_default_defocus_shows_fringes_at_a_plausible_scale() -> None:
    config = SimulationConfig()
    for defocus in config.defocus:
        period = CTF(defocus=defocus, amplitude_contrast=config.amplitude_contrast).first_zero
        assert 3.0 < period < config.particle_radius  # fringes inside a particle, above Nyquist


# --------------------------------------------------------------------------------------------------
# SNR and pairs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr", [0.01, 0.1, 1.0])
def test_measured_snr_matches_the_request(snr: float) -> None:
    config = dataclasses.replace(SMALL, snr=snr)
    mic = simulate_micrograph(config, seed=2)
    disks = _disk_union(config.shape, mic.centers, config.particle_radius)
    signal = mic.clean[disks].astype(np.float64).var()
    noise = (mic.image - mic.clean).astype(np.float64).var()
    assert signal == pytest.approx(1.0, rel=1e-4)  # signal units
    assert signal / noise == pytest.approx(snr, rel=0.03)
    assert mic.snr == pytest.approx(signal / noise, rel=1e-3)
    assert mic.noise_std == pytest.approx(1 / math.sqrt(snr))


def test_noise_is_white_and_gaussian() -> None:
    mic = simulate_micrograph(dataclasses.replace(SMALL, snr=0.5), seed=6)
    noise = (mic.image - mic.clean).astype(np.float64) / mic.noise_std
    assert abs(noise.mean()) < 0.02
    horizontal = np.corrcoef(noise[:, 1:].ravel(), noise[:, :-1].ravel())[0, 1]
    vertical = np.corrcoef(noise[1:].ravel(), noise[:-1].ravel())[0, 1]
    assert abs(horizontal) < 0.02
    assert abs(vertical) < 0.02
    assert np.mean(noise**4) == pytest.approx(3.0, rel=0.05)  # Gaussian kurtosis


def test_pairs() -> None:
    config = dataclasses.replace(SMALL, snr=0.2, ice_blobs=2)
    pair = simulate_pair(config, seed=8)
    single = simulate_micrograph(config, seed=8)
    assert pair.even is not None
    assert pair.odd is not None
    assert single.even is None
    assert single.odd is None
    np.testing.assert_array_equal(pair.clean, single.clean)
    np.testing.assert_array_equal(pair.image, single.image)
    variance = pair.noise_std**2
    clean = pair.clean.astype(np.float64)
    even = pair.even.astype(np.float64) - clean
    odd = pair.odd.astype(np.float64) - clean
    assert even.var() == pytest.approx(2 * variance, rel=0.03)
    assert odd.var() == pytest.approx(2 * variance, rel=0.03)
    assert ((even + odd) / 2).var() == pytest.approx(variance, rel=0.03)
    np.testing.assert_allclose((pair.even + pair.odd) / 2, pair.image, atol=1e-4)
    bound = 4 / math.sqrt(clean.size)
    assert abs(np.corrcoef(even.ravel(), odd.ravel())[0, 1]) < bound  # independent halves
    difference = (pair.even - pair.odd).astype(np.float64)
    assert abs(np.corrcoef(difference.ravel(), clean.ravel())[0, 1]) < bound  # pure noise
    assert difference.var() == pytest.approx(4 * variance, rel=0.03)


# --------------------------------------------------------------------------------------------------
# Distractors
# --------------------------------------------------------------------------------------------------


def test_carbon_edge() -> None:
    config = dataclasses.replace(SMALL, carbon_edge=1.0, carbon_density=1.0, num_particles=25)
    for seed in range(3):
        mic = simulate_micrograph(config, seed=seed)
        assert mic.carbon is not None
        mask = mic.carbon_mask
        assert mask is not None
        assert 0.05 < mask.mean() < 0.45
        # Denser film: darker on average, in the noisy image too.
        image = mic.image.astype(np.float64)
        assert image[mask].mean() < image[~mask].mean() - 0.5
        assert mic.clean[mask].std() > 0.5  # textured
        # No particle on (or overlapping) the carbon by default.
        assert (mic.carbon.signed_distance(mic.centers) <= -config.particle_radius).all()
        cols, rows = np.round(mic.centers).astype(int).T
        assert not mask[rows, cols].any()


def test_particles_on_carbon_option() -> None:
    config = dataclasses.replace(
        SMALL, carbon_edge=1.0, num_particles=40, particle_radius=6.0, particles_on_carbon=True
    )
    on_carbon = [
        (mic.carbon.signed_distance(mic.centers) > 0).sum()
        for mic in simulate_dataset(config, 3, seed=0)
        if mic.carbon is not None
    ]
    assert sum(on_carbon) > 0


def test_no_carbon_when_probability_is_zero() -> None:
    mics = simulate_dataset(dataclasses.replace(SMALL, shape=(64, 64), num_particles=2), 5, seed=0)
    assert all(mic.carbon is None and mic.carbon_mask is None for mic in mics)


def test_ice_blobs_and_gradient_are_where_the_metadata_says() -> None:
    plain = simulate_micrograph(SMALL, seed=2)
    config = dataclasses.replace(SMALL, ice_blobs=3)
    iced = simulate_micrograph(config, seed=2)
    assert iced.ice_blobs.shape == (3, 4)
    difference = (iced.clean - plain.clean).astype(np.float64)
    rows, cols = np.indices(SMALL.shape)
    expected = np.zeros(SMALL.shape)
    for x, y, sigma, amplitude in iced.ice_blobs:
        assert 0.5 * 2.0 <= abs(amplitude) <= 1.5 * 2.0
        expected += amplitude * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(difference, expected, atol=1e-4)

    graded = simulate_micrograph(dataclasses.replace(SMALL, ice_gradient=3.0), seed=2)
    gradient = (graded.clean - plain.clean).astype(np.float64)
    assert gradient.max() - gradient.min() == pytest.approx(3.0, rel=1e-4)
    # Slow: neighbouring pixels differ by a tiny fraction of the range.
    assert np.abs(np.diff(gradient, axis=1)).max() < 0.05


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shape", (0, 128)),
        ("shape", (128,)),
        ("shape", "128x128"),
        ("shape", (128.5, 128)),
        ("num_particles", -1),
        ("num_particles", 2.5),
        ("particle_radius", 0.0),
        ("particle_radius", True),
        ("min_separation", -1.0),
        ("snr", 0.0),
        ("snr", -0.1),
        ("snr", math.nan),
        ("snr", math.inf),
        ("defocus", (40.0, 10.0)),
        ("defocus", (-5.0, 10.0)),
        ("defocus", 20.0),
        ("astigmatism", -1.0),
        ("amplitude_contrast", 1.5),
        ("bfactor", -2.0),
        ("pixel_size", 0.0),
        ("ice_gradient", -1.0),
        ("ice_blobs", -1),
        ("ice_blob_contrast", -1.0),
        ("carbon_edge", 1.5),
        ("carbon_density", -0.5),
        ("carbon_texture", -0.5),
        ("particles_on_carbon", "yes"),
        ("allow_partial", 1),
        ("num_species", 0),
        ("num_gaussians", 0),
        ("object_seed", -1),
        ("seed", -3),
    ],
)
def test_bad_config_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field) as info:
        SimulationConfig(**{field: value})
    assert isinstance(info.value, JaxpickError)  # the CLI reports it as one line
    assert repr(value) in str(info.value)


def test_a_ctf_that_would_erase_the_particles_is_rejected() -> None:
    with pytest.raises(ValueError, match="amplitude_contrast"):
        SimulationConfig(defocus=(0.0, 0.0), amplitude_contrast=0.0)
    SimulationConfig(defocus=(0.0, 5.0), amplitude_contrast=0.0)  # some defocus: fine


def test_config_is_frozen_keyword_only_and_normalised() -> None:
    with pytest.raises(TypeError):
        SimulationConfig((128, 128))  # type: ignore[misc]
    config = SimulationConfig(shape=[128, 64], defocus=[10, 20], particle_radius=8)  # type: ignore[arg-type]
    assert config.shape == (128, 64)
    assert config.defocus == (10.0, 20.0)
    assert isinstance(config.particle_radius, float)
    assert config == SimulationConfig(shape=(128, 64), defocus=(10.0, 20.0), particle_radius=8.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.snr = 1.0  # type: ignore[misc]
    # The default separation follows the radius, also through dataclasses.replace.
    assert dataclasses.replace(config, particle_radius=20.0).separation == 40.0


def test_presets() -> None:
    easy, medium, hard = (SimulationConfig.preset(name) for name in ("easy", "medium", "hard"))
    assert set(PRESETS) == {"easy", "medium", "hard"}
    assert easy.snr > medium.snr > hard.snr == 0.01
    assert easy.particle_radius > medium.particle_radius > hard.particle_radius == 8.0
    assert (easy.ice_blobs, easy.carbon_edge, easy.ice_gradient) == (0, 0.0, 0.0)
    assert min(hard.ice_blobs, hard.carbon_edge, hard.ice_gradient) > 0
    small = SimulationConfig.preset("hard", shape=(128, 128), num_particles=5)
    assert (small.shape, small.snr) == ((128, 128), 0.01)
    with pytest.raises(ValueError, match="preset"):
        SimulationConfig.preset("impossible")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="snr"):
        SimulationConfig.preset("easy", snr=-1.0)


@pytest.mark.parametrize("name", ["easy", "medium", "hard"])
def test_presets_simulate(name: str) -> None:
    config = SimulationConfig.preset(name, shape=(160, 192), num_particles=8)
    mic = simulate_pair(config, seed=0)
    for array in (mic.image, mic.clean, mic.even, mic.odd):
        assert array is not None
        assert array.shape == (160, 192)
        assert array.dtype == np.float32
        assert np.isfinite(array).all()
    assert mic.num_particles == 8


def test_no_particles() -> None:
    mic = simulate_micrograph(SimulationConfig(shape=(64, 80), num_particles=0), seed=0)
    assert mic.centers.shape == (0, 2)
    assert mic.rotations.shape == (0, 3, 3)
    assert not mic.clean.any()
    assert math.isnan(mic.snr)
    assert mic.image.std() == pytest.approx(mic.noise_std, rel=0.05)
