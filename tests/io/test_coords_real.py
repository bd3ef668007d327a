"""Every real third-party coordinate file under ../shared/data/real (see their PROVENANCE.md)."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import numpy as np
import pytest

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords import MICROGRAPH_PATH, read_coordinates, read_star, write_coordinates
from jaxpick.io.coords.cryosparc import load_cs, picks_dtype
from tests.conftest import real_files, real_id

ALL_FILES = real_files(
    "**/*.star",
    "**/*.cbox",
    "**/*.cs",
    "**/*.box",
    "**/*.coord",
    "**/*.csv",
    "topaz_empiar10025_labels/*.txt",
)

# (rows, distinct images) from the PROVENANCE files (and counted by hand where they are silent).
EXPECTED = {
    "aspire/falcon_2012_06_12-14_33_35_0.box": (440, 1),
    "aspire/falcon_2012_06_12-14_33_35_0.coord": (440, 1),
    "aspire/falcon_2012_06_12-14_33_35_0_relion_coord.star": (440, 1),
    "aspire/sample_particles_relion30.star": (17, 1),
    "aspire/sample_particles_relion31.star": (17, 1),
    "cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star": (5, 3),
    "cryodrgn/relion31.6opticsgroups.star": (139, 139),
    "cryodrgn/relion31.star": (5, 1),
    "cryodrgn/relion31.v2.star": (5, 1),
    "cryodrgn/relion5.star": (17, 2),
    "cryosparc_tools/4k_dataset_empty_schema.cs": (0, 0),
    "micrograph_cleaner_em/Ucsf_stack_1142_DW_autopick.star": (45, 1),
    "napari_boxmanager/2d_particles.cbox": (3, 1),
    "napari_boxmanager/filament_cbox_2d/ActLifeact_03047.cbox": (56, 1),
    "napari_boxmanager/filament_cbox_2d/ActLifeact_03211.cbox": (16, 1),
    "napari_boxmanager/particle_cbox_2d/TcdA1-0018_frames_sum.cbox": (120, 1),
    "napari_boxmanager/particle_cbox_2d/TcdA1-0019_frames_sum.cbox": (129, 1),
    "starfile_tests/one_loop.star": (16, 1),
    "starfile_tests/rln3.1_data_style.star": (2, 2),
    "starfile_tests/single_line_end_of_multiblock.star": (2, 2),
    "starfile_tests/single_line_middle_of_multiblock.star": (1, 1),
    "swe4s_cryoppp_csv/Falcon_2012_06_12-14_33_35_0.csv": (629, 1),
    "swe4s_cryoppp_csv/stack_0005_2x_SumCorr.csv": (68, 1),
    "swe4s_cryoppp_csv/stack_0029_2x_SumCorr.csv": (185, 1),
    "swe4s_cryoppp_csv/stack_0057_2x_SumCorr.csv": (216, 1),
    "topaz_empiar10025_labels/particles.star": (1500, 30),
    "topaz_empiar10025_labels/particles.txt": (1500, 30),
}
# Files that are valid but hold no particle positions: the error must say why.
NO_PICKS = {
    "aspire/sample_data_model.star": "no coordinate columns",
    "cryodrgn/empiar_10076_7.star": "no coordinate columns",
    "cryodrgn/cryosparc_J2_particles_exported.cs": "no location/* fields",
    "cryodrgn/cryosparc_P12_J24_001_particles.cs": "no location/* fields",
    "cryodrgn/empiar_10076_7.cs": "no location/* fields",
    "topaz_empiar10025_labels/ctf_params.star": "no coordinate columns",
    # Read as a Topaz table by its extension: the licence text has no coordinate header.
    "topaz_empiar10025_labels/UPSTREAM_LICENSE.txt": "missing column(s) image_name, x_coord",
    "starfile_tests/basic_double_quote.star": "no coordinate columns",
    "starfile_tests/basic_single_quote.star": "no coordinate columns",
    "starfile_tests/default_pipeline.star": "no coordinate columns",
    "starfile_tests/empty_loop.star": "no coordinate columns",
    "starfile_tests/loop_double_quote.star": "no coordinate columns",
    "starfile_tests/loop_single_quote.star": "no coordinate columns",
    "starfile_tests/postprocess.star": "no coordinate columns",
    "starfile_tests/relion_tutorial/run_it025_optimiser_2D.star": "no coordinate columns",
    "starfile_tests/relion_tutorial/run_it025_optimiser_3D.star": "no coordinate columns",
    "starfile_tests/relion_tutorial/run_it025_sampling_2D.star": "no coordinate columns",
    "starfile_tests/relion_tutorial/run_it025_sampling_3D.star": "no coordinate columns",
    "starfile_tests/two_basic_blocks.star": "no coordinate columns",
    "starfile_tests/two_single_line_loop_blocks.star": "no coordinate columns",
}


def test_every_real_file_is_classified(real_data: Path) -> None:
    """A new file in the data folder must be added to EXPECTED or NO_PICKS."""
    ids = {real_id(p) for p in ALL_FILES}
    assert ids == set(EXPECTED) | set(NO_PICKS)


@pytest.mark.parametrize("path", ALL_FILES, ids=real_id)
def test_real_file_reads_with_expected_counts_or_clear_error(real_data: Path, path: Path) -> None:
    key = real_id(path)
    if path.suffix in (".star", ".cbox"):
        assert read_star(path).blocks  # every STAR-dialect file parses as STAR
    if key in NO_PICKS:
        with pytest.raises(CoordinateFormatError, match=re.escape(NO_PICKS[key])) as info:
            read_coordinates(path)
        assert str(path) in str(info.value)
        return
    coords = read_coordinates(path)
    assert (len(coords), len(coords.images())) == EXPECTED[key]
    assert np.isfinite(coords.x).all()
    assert np.isfinite(coords.y).all()
    assert all("/" not in n and not n.endswith(".mrc") for n in coords.images())


def test_topaz_tutorial_txt_and_star_hold_the_same_picks(real_data: Path) -> None:
    folder = real_data / "topaz_empiar10025_labels"
    txt = read_coordinates(folder / "particles.txt")
    star = read_coordinates(folder / "particles.star")

    def picks(c):
        return collections.Counter(
            zip(c.image_name.tolist(), c.x.tolist(), c.y.tolist(), strict=True)
        )

    assert picks(txt) == picks(star)
    assert sum(picks(txt).values()) == 1500
    assert collections.Counter(txt.image_name.tolist()).most_common()[-1][1] == 50
    assert star.extra[MICROGRAPH_PATH][0] == "14sep05c_c_00003gr_00014sq_00004hl_00004es_c.mrc"
    assert star.extra["DetectorPixelSize"][0] == pytest.approx(3.733333)


def test_topaz_tutorial_downscaled_by_8(real_data: Path) -> None:
    txt = read_coordinates(real_data / "topaz_empiar10025_labels" / "particles.txt")
    small = txt.scaled(down=8)
    # First pick (6924, 2481): 865.5 -> 866 (half to even), 310.125 -> 310.
    assert (small.x[0], small.y[0]) == (866, 310)
    # The micrographs are 7420 columns x 7676 rows (x <= 7188, y <= 7432 in the labels).
    assert small.x.max() < 7420 / 8
    assert small.y.max() < 7676 / 8


def test_cbox_centres_are_corners_plus_half_the_box(real_data: Path) -> None:
    folder = real_data / "napari_boxmanager"
    tcda = read_coordinates(folder / "particle_cbox_2d" / "TcdA1-0019_frames_sum.cbox")
    # Row 1: 1069.0966796875 3868.842498779297 <NA> 220.0 220.0 <NA> 224.0 220.0 0.80907...
    assert tcda.x[0] == 1069.0966796875 + 110
    assert tcda.y[0] == pytest.approx(3868.842498779297 + 110, abs=1e-9)
    assert tcda.score is not None
    assert tcda.score[0] == pytest.approx(0.8090754151344299)
    assert tcda.z is None
    assert tcda.extra["EstWidth"][0] == 224
    assert tcda.extra["Width"][0] == 220
    assert "NumBoxes" not in tcda.extra  # an all-<NA> column carries nothing
    assert np.nanmin(tcda.score) > 0.1
    assert np.nanmax(tcda.score) < 0.96

    tiny = read_coordinates(folder / "2d_particles.cbox")
    # 11.687700 27.959892 0.000000 25 25 25 <NA>...: odd box, exact half.
    assert tiny.x[0] == pytest.approx(11.6877 + 12.5)
    assert tiny.y[0] == pytest.approx(27.959892 + 12.5)
    assert tiny.z is not None
    assert tiny.z.tolist() == [0, 0, 0]
    assert tiny.score is None  # _Confidence is <NA> in every row

    actin = read_coordinates(folder / "filament_cbox_2d" / "ActLifeact_03047.cbox")
    # 604.0931981279252 3419.789672386895 <NA> 100.0 100.0 1.0 <NA> <NA> 1.0 <NA> <NA> 0.0
    assert actin.x[0] == pytest.approx(654.0931981279252, abs=1e-9)
    assert actin.y[0] == pytest.approx(3469.789672386895, abs=1e-9)
    # Row 54: 1836.6087017444333 3925.20969904978 ...
    assert actin.x[53] == pytest.approx(1886.6087017444333, abs=1e-9)
    assert actin.extra["filamentid"].tolist() == [0] * 56


def test_aspire_one_pick_set_in_three_formats(real_data: Path) -> None:
    """The .coord, the coordinate STAR and columns 1-2 of the .box hold the same numbers.

    The ASPIRE .box is not a real EMAN box file: columns 1-2 are centres (the same as the other
    two files), not corners (aspire/PROVENANCE.md). Read as EMAN boxes, as the format says, our
    centres are therefore those numbers + 256 // 2; the test states exactly that.
    """
    folder = real_data / "aspire"
    stem = "falcon_2012_06_12-14_33_35_0"
    coord = read_coordinates(folder / f"{stem}.coord")
    star = read_coordinates(folder / f"{stem}_relion_coord.star", suffix="_relion_coord")
    box = read_coordinates(folder / f"{stem}.box")
    assert coord.images() == star.images() == box.images() == [stem]
    assert box.extra["Width"].tolist() == [256] * 440
    box_columns_1_2 = box.replace(x=box.x - 128, y=box.y - 128)
    assert box_columns_1_2.equals(coord, check_extra=False)  # same rows, same order

    def positions(c):
        return sorted(zip(c.x.tolist(), c.y.tolist(), strict=True))

    # The STAR lists the same 440 positions, but a few neighbouring rows are swapped.
    assert positions(star) == positions(coord)
    assert not np.array_equal(star.x, coord.x)


def test_aspire_picks_are_y_up_compared_with_cryoppp_ground_truth(real_data: Path) -> None:
    """ASPIRE's positions match CryoPPP's ground truth for the same micrograph only after
    mirroring y in the 4096-row image (aspire/PROVENANCE.md): an explicit convention flag."""
    picks = read_coordinates(real_data / "aspire" / "falcon_2012_06_12-14_33_35_0.coord")
    truth = read_coordinates(real_data / "swe4s_cryoppp_csv" / "Falcon_2012_06_12-14_33_35_0.csv")
    assert truth.extra["Diameter"][0] == 108

    def median_distance(c):
        d = np.hypot(c.x[:, None] - truth.x[None], c.y[:, None] - truth.y[None])
        return float(np.median(d.min(axis=1)))

    assert median_distance(picks.inverted_y(4096)) < 25
    assert median_distance(picks) > 50


def test_relion5_and_autopick_details(real_data: Path) -> None:
    r5 = read_coordinates(real_data / "cryodrgn" / "relion5.star")
    assert r5.score is not None
    assert r5.score[0] == pytest.approx(16.459581)
    assert r5.extra[MICROGRAPH_PATH][0].startswith("MotionCorr/job003/Movies/GridSquare_347700")
    assert r5.images()[0] == "FoilHole_353510_Data_342200_1_20250401_174947_EER"
    auto = read_coordinates(
        real_data / "micrograph_cleaner_em" / "Ucsf_stack_1142_DW_autopick.star"
    )
    # RELION's per-micrograph name <mic>_autopick.star -> the micrograph Ucsf_stack_1142_DW.mrc
    assert auto.images() == ["Ucsf_stack_1142_DW"]
    assert auto.score is not None
    assert auto.score.max() == pytest.approx(0.624705)
    assert auto.x.max() < 959
    assert auto.y.max() < 927


def test_cryosparc_schema_and_writer_layout(real_data: Path, tmp_path: Path) -> None:
    schema = load_cs(real_data / "cryosparc_tools" / "4k_dataset_empty_schema.cs")
    empty = read_coordinates(real_data / "cryosparc_tools" / "4k_dataset_empty_schema.cs")
    assert len(empty) == 0
    assert empty.score is not None
    ours = picks_dtype(40, score=True)
    for name in ours.names:
        expected = schema.dtype.fields[name][0]  # type: ignore[index]
        if name == "location/micrograph_path":
            assert expected.kind == ours.fields[name][0].kind == "S"  # type: ignore[index]
        else:
            assert ours.fields[name][0] == expected, name  # type: ignore[index]
    # The location fields in cryoSPARC's order, as the schema has them.
    location = [n for n in schema.dtype.names if n.startswith("location/")]
    assert [n for n in ours.names if n.startswith("location/")] == location
    # The empty schema round-trips through our writer as an empty picks file.
    files = write_coordinates(empty, tmp_path / "empty.cs", "cs")
    assert len(load_cs(files[0])) == 0


def test_cryosparc_particle_stack_error_explains(real_data: Path) -> None:
    with pytest.raises(CoordinateFormatError, match="particle stack, not picks") as info:
        read_coordinates(real_data / "cryodrgn" / "cryosparc_P12_J24_001_particles.cs")
    assert "blob" in str(info.value)
    stack = load_cs(real_data / "cryodrgn" / "cryosparc_P12_J24_001_particles.cs")
    assert len(stack) == 2019
