"""The streaming batch machinery (without device work) and batch sizes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from jaxpick.errors import JaxpickError
from jaxpick.io.image import write_image
from jaxpick.pipeline import Report, Writers, batches, plan


@pytest.fixture
def mics(tmp_path: Path) -> list[Path]:
    """Three 32x48 micrographs, two 40x40, one truncated file and one 3-D stack."""
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"a{i}.mrc")
        write_image(paths[-1], np.full((32, 48), i, np.float32), pixel_size=1.5)
    for i in range(2):
        paths.append(tmp_path / f"b{i}.tiff")
        write_image(paths[-1], np.full((40, 40), 10 + i, np.float32))
    broken = tmp_path / "broken.mrc"
    write_image(broken, np.zeros((32, 48), np.float32))
    broken.write_bytes(broken.read_bytes()[:-100])
    stack = tmp_path / "stack.mrcs"
    write_image(stack, np.zeros((2, 8, 8), np.float32))
    return [*paths, broken, stack]


def test_plan_groups_by_shape_and_reports_bad_headers(mics: list[Path], tmp_path: Path) -> None:
    report = Report()
    groups = plan(
        mics, lambda name: [tmp_path / "out" / f"{name}.mrc"], overwrite=False, report=report
    )
    assert {k: [i.name for i in v] for k, v in groups.items()} == {
        (32, 48): ["a0", "a1", "a2"],
        (40, 40): ["b0", "b1"],
    }
    assert groups[(32, 48)][0].pixel_size == pytest.approx(1.5)
    assert set(report.failed) == {"broken", "stack"}
    assert "broken.mrc" in report.failed["broken"]
    assert "2-D" in report.failed["stack"]


def test_plan_skips_inputs_whose_outputs_all_exist(mics: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a1.mrc").write_bytes(b"x")
    (out / "b0.mrc").write_bytes(b"x")  # b0 lacks its second output, so it is redone

    def outputs(name: str) -> list[Path]:
        return [out / f"{name}.mrc", out / f"{name}.png"] if name == "b0" else [out / f"{name}.mrc"]

    report = Report()
    groups = plan(mics[:5], outputs, overwrite=False, report=report)
    assert report.skipped == ["a1"]
    assert [i.name for i in groups[(32, 48)]] == ["a0", "a2"]
    report = Report()
    groups = plan(mics[:5], outputs, overwrite=True, report=report)
    assert report.skipped == []
    assert len(groups[(32, 48)]) == 3


def test_plan_refuses_two_inputs_with_one_name(tmp_path: Path) -> None:
    write_image(tmp_path / "x.mrc", np.zeros((8, 8), np.float32))
    write_image(tmp_path / "x.tiff", np.zeros((8, 8), np.float32))
    with pytest.raises(JaxpickError, match="same image name 'x'"):
        plan(
            [tmp_path / "x.mrc", tmp_path / "x.tiff"],
            lambda n: [],
            overwrite=False,
            report=Report(),
        )


def test_batches_pad_the_last_and_skip_unreadable(mics: list[Path], tmp_path: Path) -> None:
    report = Report()
    items = plan(mics, lambda name: [tmp_path / "none" / name], overwrite=False, report=report)[
        (32, 48)
    ]
    # Make one file unreadable after planning (e.g. deleted or truncated meanwhile).
    items[1].path.write_bytes(b"")
    with ThreadPoolExecutor(2) as readers:
        out = list(batches(items, 2, readers=readers, report=report, lookahead=1))
    assert len(out) == 1
    batch = out[0]
    assert [i.name for i in batch.items] == ["a0", "a2"]
    assert batch.data.shape == (2, 32, 48)
    assert batch.valid.tolist() == [True, True]
    np.testing.assert_array_equal(batch.data[1], 2.0)
    assert "a1" in report.failed

    with ThreadPoolExecutor(2) as readers:
        padded = list(batches([items[0], items[2]], 3, readers=readers, report=Report()))
    assert padded[0].valid.tolist() == [True, True, False]
    np.testing.assert_array_equal(padded[0].data[2], 0.0)


def test_batches_read_ahead_is_bounded(tmp_path: Path) -> None:
    from jaxpick.pipeline import Item

    items = [Item(tmp_path / f"{i}.mrc", str(i), (4, 4), None) for i in range(20)]
    in_flight: list[int] = []
    started: list[str] = []

    def read(item: Item) -> np.ndarray:
        started.append(item.name)
        return np.zeros((4, 4), np.float32)

    with ThreadPoolExecutor(2) as readers:
        for k, _ in enumerate(
            batches(items, 2, readers=readers, report=Report(), lookahead=2, read=read)
        ):
            in_flight.append(len(started) - 2 * (k + 1))
    assert max(in_flight) <= 2 * 2


def test_writers_collect_failures_and_run_callbacks_in_order() -> None:
    report = Report()
    writers = Writers(threads=2, limit=1)
    done: list[str] = []

    def fail() -> None:
        raise JaxpickError("disk says no")

    for name in ("a", "b", "c"):
        job = fail if name == "b" else (lambda: None)
        writers.submit(name, job, lambda name=name: done.append(name), report)
    writers.drain(report)
    writers.close()
    assert done == ["a", "c"]
    assert report.failed == {"b": "disk says no"}
    assert "1 failed" in report.summary("wrote")
    assert "FAILED b: disk says no" in report.summary("wrote")


def test_batch_size_for_one_cpu_device_is_one() -> None:
    # One CPU device maps a batch item by item: a bigger batch would only add padded items
    # (scored for nothing) at the end of a run.
    import jax

    from jaxpick.devices import batch_size_for

    cpus = jax.devices("cpu")
    one = batch_size_for(4 * 2**20, cpus[:1], None, cpu_budget=64 * 2**20, overhead=8)
    assert one == 1
    assert batch_size_for(4 * 2**20, cpus[:1], 3, cpu_budget=64 * 2**20, overhead=8) == 3
    if len(cpus) >= 2:  # several CPU devices: from the budget, a multiple of the device count
        many = batch_size_for(4 * 2**20, cpus[:2], None, cpu_budget=16 * 2**20, overhead=8)
        assert many == 4  # 16 MiB // (4 MiB x 2 devices) = 2 per device
