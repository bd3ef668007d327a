"""Reading PyTorch ``.sav`` / ``.pt`` files (Topaz models) without torch and without running code.

``torch.save`` writes a pickle, and unpickling an arbitrary pickle runs arbitrary code. This module
uses a restricted :class:`pickle.Unpickler` whose ``find_class`` hands out only a few harmless
stand-ins:

- ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` / ``_rebuild_parameter`` /
  ``_rebuild_parameter_with_state`` and ``torch.nn.parameter.Parameter`` rebuild tensors as
  :class:`numpy.ndarray` (dtype, shape, strides and storage offset honoured; always a copy);
- the storage type names (``torch.FloatStorage``, ``torch.LongStorage``, ...) select a dtype;
- ``collections.OrderedDict``, ``builtins.set`` / ``frozenset`` and ``copyreg._reconstructor``;
- classes under ``topaz.`` and ``torch.nn.`` (the pickled ``nn.Module`` tree of a model saved by
  ``topaz train``) become :class:`PickledObject` records holding the class name and the
  attribute dictionary as plain data. They are never imported or instantiated.

Any other global (``os.system``, ``builtins.eval``, numpy internals, ...) is refused with a
:class:`~jaxpick.errors.FileFormatError` that names the file and the global, before anything runs.

Both serialisation formats are read:

- the zip format (``torch >= 1.6``, what ``topaz train`` writes today): ``<prefix>/data.pkl``
  plus one raw little-endian storage per ``<prefix>/data/<key>`` entry;
- the legacy format (the pretrained detectors bundled with Topaz): a pickled magic number
  ``0x1950a86a20f9469cfc6c``, the protocol version, a system-info dictionary, the object (storages
  as persistent ids), the list of storage keys, then for each key an 8-byte element count and the
  raw data.

Nothing here imports JAX or torch.

Examples:
  >>> from jaxpick.io.torch_sav import read_sav  # doctest: +SKIP
  >>> sav = read_sav("resnet8_u32.sav")  # doctest: +SKIP
  >>> sav.state_dict["classifier.weight"].shape  # doctest: +SKIP
  (1, 128, 1, 1)
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import numpy as np

from jaxpick.errors import FileFormatError

#: First pickled value of a legacy (non-zip) torch file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: Legacy protocol version written by every torch since 0.1.
LEGACY_PROTOCOL_VERSION = 1001

#: ``torch.<Name>Storage`` -> element dtype (little-endian). bfloat16 needs ml_dtypes.
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "BFloat16Storage": "bfloat16",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
    "UntypedStorage": "u1",
}

#: Module prefixes whose classes are recorded as :class:`PickledObject` (never imported).
RECORDED_CLASS_PREFIXES: tuple[str, ...] = ("topaz.", "torch.nn.")


class PickledObject:
    """A pickled object recorded as plain data instead of being rebuilt.

    Attributes:
      class_name: the fully qualified class name, e.g. ``"torch.nn.modules.conv.Conv2d"``.
      state: what the pickle passed to ``__setstate__`` (for ``nn.Module``: its ``__dict__``,
        with ``_parameters``, ``_buffers``, ``_modules`` and plain attributes such as ``p``).
      args: arguments the pickle passed to the class (empty for ``nn.Module``).

    Examples:
      >>> obj = PickledObject("topaz.model.features.resnet.ResNet8", {"training": False})
      >>> obj.short_name, obj.state["training"]
      ('ResNet8', False)
    """

    class_name: str
    state: Any
    args: tuple[Any, ...]

    def __init__(self, class_name: str, state: Any = None, args: tuple[Any, ...] = ()) -> None:
        self.class_name = class_name
        self.state = state
        self.args = args

    @property
    def short_name(self) -> str:
        """The class name without its module path (``"Conv2d"``)."""
        return self.class_name.rsplit(".", 1)[-1]

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def get(self, attribute: str, default: Any = None) -> Any:
        """An attribute from the recorded ``__dict__`` state (``default`` if absent)."""
        if isinstance(self.state, Mapping):
            return self.state.get(attribute, default)
        return default

    def __reduce__(self) -> Any:
        # Never write these back into a pickle: they stand for classes we did not import.
        raise TypeError("PickledObject records are not picklable")

    def __repr__(self) -> str:
        return f"PickledObject({self.class_name!r})"


_STUB_CLASSES: dict[str, type[PickledObject]] = {}


def _stub_class(class_name: str) -> type[PickledObject]:
    """A PickledObject subclass standing for ``class_name`` (what NEWOBJ/REDUCE instantiate)."""
    stub = _STUB_CLASSES.get(class_name)
    if stub is None:

        def __new__(cls: type[PickledObject], *args: Any, **kwargs: Any) -> PickledObject:
            obj = object.__new__(cls)
            PickledObject.__init__(obj, class_name, None, args)
            return obj

        def __init__(self: PickledObject, *args: Any, **kwargs: Any) -> None:
            pass

        stub = type(
            class_name.rsplit(".", 1)[-1],
            (PickledObject,),
            {"__new__": __new__, "__init__": __init__, "__module__": __name__},
        )
        _STUB_CLASSES[class_name] = stub
    return stub


@dataclass(frozen=True)
class _StorageType:
    """Stands for ``torch.<Name>Storage`` inside persistent ids."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return _dtype(self.name)


def _dtype(storage_name: str) -> np.dtype:
    code = STORAGE_DTYPES[storage_name]
    if code == "bfloat16":
        import ml_dtypes  # a JAX dependency, but not JAX itself

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(code)


@dataclass(frozen=True)
class _Storage:
    """A loaded storage: a flat array (``None`` during the legacy format's first pass)."""

    key: str
    data: np.ndarray | None


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ValueError(f"bad tensor {what} {value!r}")
    return tuple(value)


def _rebuild_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_unused: Any
) -> np.ndarray | None:
    """``torch._utils._rebuild_tensor_v2`` as a numpy copy; checks every index is in bounds."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor storage is {type(storage).__name__}, not a persistent storage")
    if storage.data is None:  # first pass over a legacy file: storages not read yet
        return None
    shape = _as_int_tuple(size, "size")
    strides = _as_int_tuple(stride, "stride")
    if len(shape) != len(strides) or not isinstance(storage_offset, int) or storage_offset < 0:
        raise ValueError(f"bad tensor geometry: offset {storage_offset!r}, size {size!r}")
    flat = storage.data
    if any(n == 0 for n in shape):
        return np.zeros(shape, flat.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
    if last >= flat.size:
        raise ValueError(
            f"tensor of size {shape} at offset {storage_offset} overruns its storage "
            f"of {flat.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:],
        shape=shape,
        strides=tuple(s * flat.itemsize for s in strides),
        writeable=False,
    )
    return np.array(view)  # own, contiguous, writeable memory


def _rebuild_parameter(data: Any, *_unused: Any) -> Any:
    """``torch._utils._rebuild_parameter(data, requires_grad, hooks[, state])``: the data."""
    return data


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """``copyreg._reconstructor`` (protocols 0/1), limited to recorded classes."""
    if isinstance(cls, type) and issubclass(cls, PickledObject):
        return cls.__new__(cls)
    raise ValueError(f"copyreg._reconstructor of {cls!r} is not allowed")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
}

# Python 2 / protocol-2 module names that pickle maps before find_class normally does.
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only tensors, containers and :class:`PickledObject` records."""

    def __init__(
        self, file: BinaryIO, path: str, persistent_load: Callable[[Any], Any] | None
    ) -> None:
        super().__init__(file, fix_imports=False, encoding="latin1")
        self._path = path
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        module = _MODULE_ALIASES.get(module, module)
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is not None:
            return found
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        qualified = f"{module}.{name}"
        if qualified.startswith(RECORDED_CLASS_PREFIXES) and name.isidentifier():
            return _stub_class(qualified)
        raise FileFormatError(
            self._path,
            f"refusing to load: the pickle references {qualified!r}, which is not a tensor, "
            "a container or a torch.nn/topaz module class (a model file never needs it)",
        )

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent_load(pid)


def _unpickle(
    file: BinaryIO, path: str, persistent_load: Callable[[Any], Any] | None = None
) -> Any:
    try:
        return _RestrictedUnpickler(file, path, persistent_load).load()
    except FileFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as err:
        raise FileFormatError(path, f"not a readable torch file: {err}") from err
    except (AttributeError, ImportError, struct.error, OverflowError, MemoryError) as err:
        raise FileFormatError(path, f"corrupt torch pickle: {err}") from err


def _storage_pid(pid: Any) -> tuple[_StorageType, str, int, tuple[str, int, int] | None]:
    """Checks a storage persistent id; returns (type, key, numel, view metadata)."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise ValueError(f"unsupported persistent id {pid!r:.200}")
    storage_type, key, _location, numel = pid[1:5]
    view = pid[5] if len(pid) > 5 else None
    if not isinstance(storage_type, _StorageType):
        raise ValueError(f"unsupported storage type {storage_type!r:.100}")
    if not isinstance(numel, int) or numel < 0:
        raise ValueError(f"bad storage size {numel!r}")
    if view is not None and not (
        isinstance(view, tuple)
        and len(view) == 3
        and isinstance(view[1], int)
        and isinstance(view[2], int)
    ):
        raise ValueError(f"bad storage view {view!r:.100}")
    return storage_type, str(key), numel, view


def _load_zip(path: str, archive: zipfile.ZipFile) -> Any:
    names = archive.namelist()
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise FileFormatError(path, f"zip archive without a single data.pkl ({len(pickles)})")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise FileFormatError(path, f"unknown byte order {byteorder!r}")
    loaded: dict[str, _Storage] = {}

    def persistent_load(pid: Any) -> _Storage:
        storage_type, key, numel, _view = _storage_pid(pid)
        if key in loaded:
            return loaded[key]
        dtype = storage_type.dtype
        entry = f"{prefix}data/{key}"
        try:
            raw = archive.read(entry)
        except KeyError:
            raise ValueError(f"storage {key!r} missing from the archive") from None
        if len(raw) != numel * dtype.itemsize:
            raise ValueError(
                f"storage {key!r} has {len(raw)} bytes, expected {numel} x {dtype.itemsize}"
            )
        data = np.frombuffer(raw, dtype)
        if byteorder == "big" and dtype.itemsize > 1:
            data = data.byteswap()
        loaded[key] = _Storage(key, data)
        return loaded[key]

    with archive.open(pickles[0]) as f:
        return _unpickle(io.BytesIO(f.read()), path, persistent_load)


def _is_module_pid(pid: Any) -> bool:
    """Legacy files record each module class as ``("module", cls, source_file, source)``."""
    if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module":
        if isinstance(pid[1], type) and issubclass(pid[1], PickledObject):
            return True
        raise ValueError(f"bad module persistent id {pid[:2]!r:.200}")
    return False


def _load_legacy(path: str, f: BinaryIO) -> Any:
    magic = _unpickle(f, path)
    if magic != LEGACY_MAGIC:
        raise FileFormatError(path, "not a torch file (wrong magic number)")
    version = _unpickle(f, path)
    if version != LEGACY_PROTOCOL_VERSION:
        raise FileFormatError(path, f"unsupported legacy torch protocol version {version!r}")
    sys_info = _unpickle(f, path)
    little_endian = True
    if isinstance(sys_info, dict):
        little_endian = bool(sys_info.get("little_endian", True))
    object_start = f.tell()
    file_size = os.fstat(f.fileno()).st_size

    # First pass: learn the storages (type, size) and where the object pickle ends.
    declared: dict[str, tuple[np.dtype, int]] = {}

    def declare(pid: Any) -> Any:
        if _is_module_pid(pid):
            return pid[1]
        storage_type, key, numel, _view = _storage_pid(pid)
        declared.setdefault(key, (storage_type.dtype, numel))
        return _Storage(key, None)

    _unpickle(f, path, declare)
    keys = _unpickle(f, path)
    if not isinstance(keys, list) or set(map(str, keys)) != set(declared):
        raise FileFormatError(path, "legacy storage key list does not match the pickle")
    storages: dict[str, np.ndarray] = {}
    order = "<" if little_endian else ">"
    for key in map(str, keys):
        dtype, numel = declared[key]
        header = f.read(8)
        if len(header) != 8:
            raise FileFormatError(path, f"truncated: storage {key!r} missing")
        (count,) = struct.unpack(order + "q", header)
        if count != numel:
            raise FileFormatError(path, f"storage {key!r} holds {count} elements, not {numel}")
        nbytes = count * dtype.itemsize
        if nbytes > file_size - f.tell():
            raise FileFormatError(path, f"truncated: storage {key!r} is incomplete")
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise FileFormatError(path, f"truncated: storage {key!r} is incomplete")
        data = np.frombuffer(raw, dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype)
        storages[key] = data.astype(dtype, copy=False) if dtype.itemsize > 1 else data

    # Second pass over the (small) object pickle, now with the data.
    def persistent_load(pid: Any) -> Any:
        if _is_module_pid(pid):
            return pid[1]
        _storage_type, key, _numel, view = _storage_pid(pid)
        data = storages[key]
        if view is not None:  # (view key, offset, size) in elements of the root storage
            _view_key, offset, size = view
            if offset < 0 or size < 0 or offset + size > data.size:
                raise ValueError(f"storage view beyond storage {key!r}")
            data = data[offset : offset + size]
        return _Storage(key, data)

    f.seek(object_start)
    return _unpickle(f, path, persistent_load)


def load_torch_file(path: str | os.PathLike[str]) -> Any:
    """Unpickles a ``torch.save`` file safely; tensors come back as numpy arrays.

    Args:
      path: a ``.sav`` / ``.pt`` / ``.pth`` file in the zip or the legacy torch format.

    Returns:
      The saved object: typically an ``OrderedDict`` state dict of arrays, or a
      :class:`PickledObject` tree for a whole pickled ``nn.Module``.

    Raises:
      FileFormatError: the file is missing, not a torch file, truncated or corrupt, or its pickle
        references a global outside the allowed set (the message names it).
    """
    return _load(os.fspath(path))[0]


def _load(name: str) -> tuple[Any, Literal["zip", "legacy"]]:
    try:
        f = open(name, "rb")  # noqa: SIM115 (closed below; zipfile needs the handle)
    except OSError as err:
        raise FileFormatError(name, f"cannot open: {err.strerror or err}") from err
    with f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(b"PK"):
            try:
                archive = zipfile.ZipFile(f)
            except zipfile.BadZipFile as err:
                raise FileFormatError(name, f"corrupt zip archive: {err}") from err
            with archive:
                try:
                    return _load_zip(name, archive), "zip"
                except (zipfile.BadZipFile, OSError, EOFError) as err:
                    raise FileFormatError(name, f"corrupt zip archive: {err}") from err
        if not head.startswith(b"\x80"):
            raise FileFormatError(name, "not a torch file (neither a zip archive nor a pickle)")
        return _load_legacy(name, f), "legacy"


def iter_modules(module: Any, prefix: str = "") -> Iterator[tuple[str, PickledObject]]:
    """Walks a pickled ``nn.Module`` tree in registration order, like ``named_modules()``.

    Args:
      module: a :class:`PickledObject` for an ``nn.Module``.
      prefix: name given to ``module`` itself (``""`` for the root).

    Yields:
      ``(dotted_name, module)`` pairs, the root first, children depth-first.
    """
    if not isinstance(module, PickledObject):
        return
    yield prefix, module
    children = module.get("_modules") or {}
    for child_name, child in children.items():
        if child is None:
            continue
        yield from iter_modules(child, f"{prefix}.{child_name}" if prefix else str(child_name))


def module_state_dict(module: PickledObject) -> OrderedDict[str, np.ndarray]:
    """The state dict of a pickled ``nn.Module``, in torch's ``state_dict()`` order and naming.

    For each module (root first, then children depth-first): its non-``None`` parameters, then its
    persistent non-``None`` buffers, keyed ``"<module path>.<name>"``.
    """
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, mod in iter_modules(module):
        dotted = f"{name}." if name else ""
        params = mod.get("_parameters") or {}
        buffers = mod.get("_buffers") or {}
        skip = mod.get("_non_persistent_buffers_set") or set()
        for key, value in params.items():
            if value is not None:
                out[dotted + key] = value
        for key, value in buffers.items():
            if value is not None and key not in skip:
                out[dotted + key] = value
    return out


@dataclass(frozen=True)
class TorchSav:
    """What a Topaz ``.sav`` file holds, as plain data.

    Attributes:
      path: the file read.
      format: ``"zip"`` or ``"legacy"``.
      obj: the unpickled object (state dict or :class:`PickledObject` module tree).
      state_dict: tensors by torch state-dict key (numpy arrays).
      module_classes: for a pickled module, ``dotted path -> class name`` in registration order
        (``""`` is the root); empty for a bare state dict.
    """

    path: str
    format: Literal["zip", "legacy"]
    obj: Any
    state_dict: OrderedDict[str, np.ndarray]
    module_classes: OrderedDict[str, str]

    @property
    def is_module(self) -> bool:
        """Whether the file holds a whole pickled ``nn.Module`` (not a bare state dict)."""
        return isinstance(self.obj, PickledObject)


def read_sav(path: str | os.PathLike[str]) -> TorchSav:
    """Reads a Topaz model file: a bare state dict or a whole pickled ``LinearClassifier``.

    Args:
      path: the ``.sav`` file.

    Returns:
      A :class:`TorchSav` with the state dict (numpy arrays) and, for a pickled module, the class
      name of every submodule.

    Raises:
      FileFormatError: unreadable, unsafe, or holding neither a state dict nor a module.
    """
    name = os.fspath(path)
    obj, fmt = _load(name)
    if isinstance(obj, PickledObject):
        state = module_state_dict(obj)
        classes = OrderedDict((key, mod.class_name) for key, mod in iter_modules(obj))
    elif isinstance(obj, Mapping):
        bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
        if bad:
            raise FileFormatError(name, f"not a state dict: entry {bad[0]!r} is not a tensor")
        state = OrderedDict(obj.items())
        classes = OrderedDict()
    else:
        raise FileFormatError(
            name, f"holds a {type(obj).__name__}, neither a state dict nor a pickled model"
        )
    return TorchSav(path=name, format=fmt, obj=obj, state_dict=state, module_classes=classes)
