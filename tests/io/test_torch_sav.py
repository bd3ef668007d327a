"""jaxpick.io.torch_sav: torch files read without torch, and without running pickled code."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from jaxpick.errors import FileFormatError
from jaxpick.io.torch_sav import (
    LEGACY_MAGIC,
    PickledObject,
    load_torch_file,
    module_state_dict,
    read_sav,
)

DATA = Path(__file__).resolve().parent.parent / "data"
MODELS = DATA / "topaz_models"


@pytest.fixture(scope="module")
def expected_tensors() -> dict[str, np.ndarray]:
    with np.load(DATA / "tensors.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("name", ["tensors_zip.pt", "tensors_legacy.pt"])
def test_tensors_in_both_formats(name: str, expected_tensors: dict[str, np.ndarray]) -> None:
    sav = read_sav(MODELS / name)
    assert sav.format == ("zip" if "zip" in name else "legacy")
    assert not sav.is_module
    assert not sav.module_classes
    assert list(sav.state_dict) == list(expected_tensors)
    for key, want in expected_tensors.items():
        got = sav.state_dict[key]
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    # Views are honoured (strides, storage offset) and come back as independent copies.
    np.testing.assert_array_equal(sav.state_dict["transposed"], sav.state_dict["base"].T)
    np.testing.assert_array_equal(sav.state_dict["offset_view"], sav.state_dict["base"][1:3, 2:5])
    sav.state_dict["transposed"][0, 0] = -1
    assert sav.state_dict["base"][0, 0] == 0


def test_pickled_model_zip_and_legacy_agree() -> None:
    a = read_sav(MODELS / "c63_u4_nobn.sav")
    b = read_sav(MODELS / "c63_u4_nobn_legacy.sav")
    assert (a.format, b.format) == ("zip", "legacy")
    assert a.is_module
    assert b.is_module
    assert list(a.state_dict) == list(b.state_dict)
    for key in a.state_dict:
        np.testing.assert_array_equal(a.state_dict[key], b.state_dict[key])
    assert a.module_classes == b.module_classes


def test_pickled_module_tree_is_plain_data() -> None:
    sav = read_sav(MODELS / "r8_u8_bn_max.sav")
    root = sav.obj
    assert isinstance(root, PickledObject)
    assert root.class_name == "topaz.model.classifier.LinearClassifier"
    assert sav.module_classes[""] == root.class_name
    assert sav.module_classes["features"] == "topaz.model.features.resnet.ResNet8"
    assert sav.module_classes["features.features.1"] == "topaz.model.features.resnet.MaxPool"
    assert sav.module_classes["features.features.0.bn"] == "torch.nn.modules.batchnorm.BatchNorm2d"
    # torch's state_dict order and naming: parameters, then buffers, module by module.
    keys = list(sav.state_dict)
    assert keys[:6] == [
        "features.features.0.conv.weight",
        "features.features.0.bn.weight",
        "features.features.0.bn.bias",
        "features.features.0.bn.running_mean",
        "features.features.0.bn.running_var",
        "features.features.0.bn.num_batches_tracked",
    ]
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]
    assert sav.state_dict["features.features.0.bn.num_batches_tracked"].dtype == np.int64
    assert list(module_state_dict(root)) == keys
    # Nothing from torch or topaz was imported to get here.
    assert "torch" not in sys.modules
    assert not any(m == "topaz" or m.startswith("topaz.") for m in sys.modules)


def test_dropout_rate_is_recorded() -> None:
    sav = read_sav(MODELS / "r8_u4_nobn_drop.sav")
    dropouts = [m for _, m in _modules(sav.obj) if m.short_name == "Dropout"]
    assert dropouts
    assert all(m.get("p") == pytest.approx(0.2) for m in dropouts)


def _modules(root: PickledObject) -> list[tuple[str, PickledObject]]:
    from jaxpick.io.torch_sav import iter_modules

    return list(iter_modules(root))


MALICIOUS = [
    # os.system("echo pwned") via GLOBAL + REDUCE, protocol 0
    b"cos\nsystem\n(S'echo pwned'\ntR.",
    # builtins.eval via protocol 2
    pickle.dumps(eval, protocol=2)[:-1] + b")R.",
    # getattr(…) chains start with builtins.getattr
    b"\x80\x02cbuiltins\ngetattr\nq\x00.",
    # numpy's reconstructor is not needed for torch files either
    b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00.",
    # posix.system under its other module name
    b"cposix\nsystem\n(S'true'\ntR.",
]


@pytest.mark.parametrize("payload", MALICIOUS)
def test_refuses_unsafe_globals_legacy(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "evil.sav"
    head = pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"little_endian": True}, protocol=2)
    path.write_bytes(head + payload)
    with pytest.raises(FileFormatError, match="refusing to load") as info:
        load_torch_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("payload", MALICIOUS[:2])
def test_refuses_unsafe_globals_bare_pickle_and_zip(tmp_path: Path, payload: bytes) -> None:
    bare = tmp_path / "bare.pt"
    bare.write_bytes(payload if payload.startswith(b"\x80") else b"\x80\x02" + payload)
    with pytest.raises(FileFormatError):
        load_torch_file(bare)
    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/version", "3\n")
    with pytest.raises(FileFormatError, match=r"refusing to load.*system|refusing to load.*eval"):
        load_torch_file(archive)


def test_global_names_the_offender(tmp_path: Path) -> None:
    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(FileFormatError, match=r"'os\.system'"):
        load_torch_file(archive)


def test_other_classes_are_refused(tmp_path: Path) -> None:
    # A class outside torch.nn / topaz (e.g. an optimizer or user code) is not recorded.
    class_pickle = b"\x80\x02cmypackage.models\nNet\nq\x00)\x81q\x01}q\x02b."
    archive = tmp_path / "other.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", class_pickle)
    with pytest.raises(FileFormatError, match="mypackage.models.Net"):
        load_torch_file(archive)


def test_recorded_classes_are_not_imported(tmp_path: Path) -> None:
    # torch.nn classes are recorded by name; torch itself is never imported.
    data = (
        b"\x80\x02ctorch.nn.modules.conv\nConv2d\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00pK\x03sb."
    )
    archive = tmp_path / "m.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", data)
    obj = load_torch_file(archive)
    assert isinstance(obj, PickledObject)
    assert obj.class_name == "torch.nn.modules.conv.Conv2d"
    assert obj.state == {"p": 3}
    with pytest.raises(TypeError):
        pickle.dumps(obj)


def test_not_a_torch_file(tmp_path: Path) -> None:
    text = tmp_path / "model.sav"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="not a torch file"):
        load_torch_file(text)
    with pytest.raises(FileFormatError, match="cannot open"):
        load_torch_file(tmp_path / "missing.sav")
    plain = tmp_path / "plain.sav"
    plain.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(FileFormatError, match="magic"):
        load_torch_file(plain)


def test_truncated_legacy_file(tmp_path: Path) -> None:
    data = (MODELS / "tensors_legacy.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[:-10])
    with pytest.raises(FileFormatError, match="truncated"):
        load_torch_file(cut)


def test_zip_storage_size_is_checked(tmp_path: Path) -> None:
    source = MODELS / "tensors_zip.pt"
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            payload = zin.read(item.filename)
            if item.filename.endswith("/data/0"):
                payload = payload[:-4]
            zout.writestr(item.filename, payload)
    with pytest.raises(FileFormatError, match="bytes"):
        load_torch_file(bad)


def test_tensor_overrunning_its_storage_is_refused(tmp_path: Path) -> None:
    # A hand-made legacy file: one float storage of 2 elements, a tensor claiming 3.
    out = io.BytesIO()
    for value in (LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(value, out, protocol=2)
    obj = (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
        b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQ"
        b"K\x00K\x03\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR."
    )
    out.write(obj)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", 2) + np.array([1, 2], "<f4").tobytes())
    path = tmp_path / "overrun.pt"
    path.write_bytes(out.getvalue())
    with pytest.raises(FileFormatError, match="overruns"):
        load_torch_file(path)
    # The same file with a 2-element tensor reads fine.
    path.write_bytes(out.getvalue().replace(b"K\x03\x85K\x01\x85", b"K\x02\x85K\x01\x85"))
    np.testing.assert_array_equal(load_torch_file(path), [1.0, 2.0])


def test_state_dict_type_checks(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps([1, 2], protocol=2))
    with pytest.raises(FileFormatError, match="neither a state dict"):
        read_sav(path)
    path = tmp_path / "dict.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(OrderedDict(a=1), protocol=2))
    with pytest.raises(FileFormatError, match="not a tensor"):
        read_sav(path)


@pytest.mark.parametrize("name", ["resnet8_u32", "resnet16_u64"])
def test_bundled_topaz_detectors(name: str) -> None:
    from jaxpick.checkpoint import topaz_package_dir

    package = topaz_package_dir()
    path = None if package is None else package / "pretrained" / "detector" / f"{name}.sav"
    if path is None or not path.is_file():
        pytest.skip(
            "topaz-em is not installed (pip install --no-deps topaz-em provides the weights)"
        )
    sav = read_sav(path)
    assert sav.format == "legacy"
    units = int(name.rsplit("_u", 1)[1])
    assert sav.state_dict["features.features.0.conv.weight"].shape == (units, 1, 7, 7)
    assert sav.state_dict["classifier.weight"].shape == (1, 4 * units, 1, 1)
    assert all(v.dtype == np.float32 for v in sav.state_dict.values())
