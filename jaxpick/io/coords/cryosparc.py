"""cryoSPARC ``.cs`` datasets (particle picks).

A ``.cs`` file is a numpy structured array saved with ``np.save`` (``.npy`` bytes under a ``.cs``
name), one field per column: ``uid``, ``location/*`` for picks, ``blob/*`` for extracted particle
images, ``ctf/*``, ``alignments*/*``, ``pick_stats/*``… Pick positions are fractions of the
micrograph size, ``location/micrograph_shape`` is ``(ny, nx)``, and there is no y flip (pyem's
``csparc2star`` and cryoSPARC's own STAR export compute the same):

    x = location/center_x_frac · nx,    y = location/center_y_frac · ny.

Files without ``location/*`` fields (particle stacks from import/extract/export, like cryoDRGN's
test files) hold no pick positions: reading them is an error that says so, never a silent empty
table. The writer produces exactly the ``location/*`` dtype layout of cryoSPARC's own particle
datasets (checked against ``cryosparc-tools``' ``4k_dataset.cs`` schema) plus
``pick_stats/ncc_score`` for scores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.atomic import atomic_path
from jaxpick.io.coords.table import MICROGRAPH_PATH, Coordinates
from jaxpick.io.names import image_name as normalise_image_name

CENTER_X = "location/center_x_frac"
CENTER_Y = "location/center_y_frac"
SHAPE = "location/micrograph_shape"
PATH = "location/micrograph_path"
SCORE = "pick_stats/ncc_score"
LOCATION_FIELDS = (CENTER_X, CENTER_Y, SHAPE)

_NPY_MAGIC = b"\x93NUMPY"


def load_cs(path: str | os.PathLike[str]) -> np.ndarray:
    """Loads a ``.cs`` file as a 1-D structured array, validating it before allocating memory.

    Raises:
      CoordinateFormatError: unreadable, not ``.npy`` bytes, a truncated file, a header that
        declares more data than the file holds, or not a 1-D structured array.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            f.seek(0)
            if magic != _NPY_MAGIC:
                hint = ""
                if magic.startswith(b"\x94CSDAT"):
                    hint = (
                        " (it looks like cryosparc-tools' compressed dataset format; save it "
                        "with the numpy format instead)"
                    )
                raise CoordinateFormatError(
                    path, f"not a cryoSPARC .cs file: no numpy .npy header{hint}"
                )
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except Exception as e:
                # numpy parses the header dict with ast/tokenize, whose failures on garbage are
                # not a documented set (SyntaxError, tokenize.TokenError, ValueError, ...).
                raise CoordinateFormatError(path, f"corrupt .cs (numpy) header: {e}") from e
            if not dtype.names or dtype.itemsize == 0 or len(shape) != 1 or dtype.hasobject:
                raise CoordinateFormatError(
                    path,
                    f"not a cryoSPARC dataset: expected a 1-D structured array, got shape "
                    f"{shape} of {dtype}",
                )
            offset = f.tell()
            f.seek(0, os.SEEK_END)
            available = f.tell() - offset
            needed = shape[0] * dtype.itemsize
            if needed > available:
                raise CoordinateFormatError(
                    path,
                    f"truncated: header declares {shape[0]} rows ({needed} bytes) but only "
                    f"{available} bytes follow",
                )
            f.seek(offset)
            data = f.read(needed)
    except OSError as e:
        raise CoordinateFormatError(path, f"cannot read file: {e.strerror or e}") from e
    array = np.frombuffer(data, dtype=dtype, count=shape[0]).copy()
    _check_fields(array, path)
    return array


def _check_fields(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Rejects what cryoSPARC never writes and numpy cannot safely turn into Python objects."""
    for name in array.dtype.names or ():
        base = array.dtype[name].base
        if base.names is not None:
            raise CoordinateFormatError(path, f"field {name} is a nested structure")
        if base.kind == "U":
            # Unicode fields hold raw UCS-4 code points; garbage ones crash str conversion.
            field = np.ascontiguousarray(array[name])
            codes = np.frombuffer(
                field.tobytes(), dtype=np.dtype("u4").newbyteorder(base.byteorder)
            )
            if ((codes >= 0x110000) | ((codes >= 0xD800) & (codes < 0xE000))).any():
                raise CoordinateFormatError(path, f"field {name} holds invalid text")


def _text(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S" and values.ndim == 1:
        return np.array([v.decode("utf-8", errors="replace") for v in values], dtype=np.str_)
    return values.astype(np.str_)


def _numbers(
    array: np.ndarray, name: str, path: str | os.PathLike[str], per_row: tuple[int, ...] = ()
) -> np.ndarray:
    values = array[name]
    if values.dtype.kind not in "iuf" or values.shape[1:] != per_row:
        expected = f"{per_row[0]} numbers" if per_row else "a number"
        raise CoordinateFormatError(
            path, f"field {name} holds {values.dtype} of shape {values.shape[1:]}, not {expected}"
        )
    return values.astype(np.float64)


def cs_to_coordinates(
    array: np.ndarray, path: str | os.PathLike[str], *, image_name: str | None = None
) -> Coordinates:
    """Maps a cryoSPARC dataset to a coordinate table.

    ``extra`` keeps every other field under its cryoSPARC name (text fields decoded), and the
    micrograph path as written under ``"micrograph_path"``.

    Raises:
      CoordinateFormatError: no ``location/*`` fields, fields of the wrong type, or non-finite
        positions.
    """
    names = array.dtype.names or ()
    missing = [f for f in LOCATION_FIELDS if f not in names]
    if missing:
        kinds = sorted({n.split("/")[0] for n in names if "/" in n})
        raise CoordinateFormatError(
            path,
            f"has no location/* fields ({', '.join(missing)} missing; it has "
            f"{', '.join(kinds) or 'no'} fields): a particle stack, not picks; export "
            "particles from a job that keeps pick locations (e.g. Extract, 2D Classification)",
        )
    shape = _numbers(array, SHAPE, path, (2,))
    with np.errstate(over="ignore", invalid="ignore"):  # garbage becomes inf/nan, caught below
        x = _numbers(array, CENTER_X, path) * shape[:, 1]
        y = _numbers(array, CENTER_Y, path) * shape[:, 0]
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise CoordinateFormatError(path, "some pick positions are not finite numbers")
    score = _numbers(array, SCORE, path) if SCORE in names else None
    paths = np.full(len(array), "", dtype=np.str_)
    for field in (PATH, "blob/path"):
        if field in names:
            if array[field].dtype.kind not in "SU" or array[field].ndim != 1:
                raise CoordinateFormatError(path, f"field {field} does not hold text")
            paths = _text(array[field])
            break
    if image_name is not None:
        image_names = [image_name] * len(array)
    else:
        image_names = [normalise_image_name(p) or p for p in paths]
    extra: dict[str, np.ndarray] = {MICROGRAPH_PATH: paths}
    for name in names:
        if name not in (CENTER_X, CENTER_Y, SCORE):
            values = array[name]
            extra[name] = _text(values) if values.dtype.kind == "S" else np.array(values)
    return Coordinates(
        image_name=np.array(image_names, dtype=np.str_), x=x, y=y, score=score, extra=extra
    )


def read_cs(path: str | os.PathLike[str], *, image_name: str | None = None) -> Coordinates:
    """Reads cryoSPARC picks from a ``.cs`` file (see :func:`cs_to_coordinates`)."""
    return cs_to_coordinates(load_cs(path), path, image_name=image_name)


def picks_dtype(path_length: int, *, score: bool) -> np.dtype:
    """The dtype of a cryoSPARC picks dataset: cryoSPARC's ``location/*`` layout (+ score)."""
    fields: list[tuple] = [
        ("uid", "<u8"),
        ("location/micrograph_uid", "<u8"),
        ("location/exp_group_id", "<u4"),
        (PATH, f"|S{max(1, path_length)}"),
        (SHAPE, "<u4", (2,)),
        (CENTER_X, "<f4"),
        (CENTER_Y, "<f4"),
        ("location/min_dist_A", "<f4"),
        ("location/micrograph_psize_A", "<f4"),
    ]
    if score:
        fields.append((SCORE, "<f4"))
    return np.dtype(fields)


def _extra_or(coords: Coordinates, key: str, default: np.ndarray) -> np.ndarray:
    values = coords.extra.get(key)
    if values is None or values.shape != default.shape or values.dtype.kind not in "iuf":
        return default
    if np.isnan(values.astype(np.float64)).any():
        return default
    return values


def coordinates_to_cs(
    coords: Coordinates,
    *,
    image_shapes: Mapping[str, tuple[int, int]] | None = None,
    pixel_size: float | None = None,
    image_ext: str = ".mrc",
    seed: int | None = None,
    path: str | os.PathLike[str] = "<cs>",
) -> np.ndarray:
    """Builds a cryoSPARC picks array.

    Args:
      coords: the table (2-D).
      image_shapes: ``{image_name: (ny, nx)}`` for every image in the table (cryoSPARC stores
        positions as fractions of the micrograph size). Rows read from a ``.cs`` file may omit
        it (their ``location/micrograph_shape`` is kept).
      pixel_size: micrograph pixel size in Å for ``location/micrograph_psize_A`` (default: the
        table's column if it has one, else 0 = unknown).
      image_ext: appended to image names for ``location/micrograph_path`` when the table has
        no original path.
      seed: seed for the random 64-bit ``uid`` and ``location/micrograph_uid`` values
        (cryoSPARC identifies rows and micrographs by random uids); kept from the table when it
        has them.
      path: destination, for error messages.

    Raises:
      CoordinateFormatError: 3-D picks, or an image without a known shape (named).
    """
    if coords.z is not None:
        raise CoordinateFormatError(path, "cryoSPARC .cs picks are 2-D; this table has z")
    n = len(coords)
    image_shapes = dict(image_shapes or {})
    known_shape = coords.extra.get(SHAPE)
    if known_shape is not None and known_shape.shape != (n, 2):
        known_shape = None
    shapes = np.zeros((n, 2), dtype=np.float64)
    for i, name in enumerate(coords.image_name):
        name = str(name)
        if name in image_shapes:
            ny, nx = image_shapes[name]
            shapes[i] = (ny, nx)
        elif known_shape is not None:
            shapes[i] = known_shape[i]
        else:
            raise CoordinateFormatError(
                path,
                f"writing cryoSPARC .cs needs the size of image {name!r}: pass its "
                "(ny, nx) in image_shapes",
            )
    if (shapes <= 0).any():
        raise CoordinateFormatError(path, "image shapes must be positive (ny, nx)")
    rng = np.random.default_rng(seed)
    images = coords.images()
    mic_uid_of = dict(
        zip(
            images,
            rng.integers(0, 2**64, size=len(images), dtype=np.uint64, endpoint=False),
            strict=True,
        )
    )
    mic_uids = np.array([mic_uid_of[str(m)] for m in coords.image_name], dtype=np.uint64)
    raw_paths = coords.extra.get(MICROGRAPH_PATH)
    paths = [
        (str(raw_paths[i]) if raw_paths is not None and str(raw_paths[i]) else f"{m}{image_ext}")
        for i, m in enumerate(coords.image_name)
    ]
    encoded = [p.encode("utf-8") for p in paths]
    out = np.zeros(
        n,
        dtype=picks_dtype(
            max((len(p) for p in encoded), default=1), score=(coords.score is not None)
        ),
    )
    out["uid"] = _extra_or(coords, "uid", rng.integers(0, 2**64, size=n, dtype=np.uint64))
    out["location/micrograph_uid"] = _extra_or(coords, "location/micrograph_uid", mic_uids)
    out["location/exp_group_id"] = _extra_or(
        coords, "location/exp_group_id", np.zeros(n, dtype=np.uint32)
    )
    out[PATH] = encoded
    out[SHAPE] = shapes.astype(np.uint32)
    out[CENTER_X] = coords.x / shapes[:, 1]
    out[CENTER_Y] = coords.y / shapes[:, 0]
    out["location/min_dist_A"] = _extra_or(coords, "location/min_dist_A", np.zeros(n))
    psize = np.full(n, float(pixel_size) if pixel_size is not None else 0.0)
    if pixel_size is None:
        psize = _extra_or(coords, "location/micrograph_psize_A", psize)
    out["location/micrograph_psize_A"] = psize
    if coords.score is not None:
        out[SCORE] = coords.score
    return out


def write_cs(
    coords: Coordinates,
    dest: str | os.PathLike[str],
    *,
    image_shapes: Mapping[str, tuple[int, int]] | None = None,
    pixel_size: float | None = None,
    image_ext: str = ".mrc",
    seed: int | None = None,
) -> list[Path]:
    """Writes cryoSPARC picks to ``dest`` (``np.save`` bytes, atomically).

    See :func:`coordinates_to_cs` for the arguments.

    Returns:
      ``[dest]``.
    """
    array = coordinates_to_cs(
        coords,
        image_shapes=image_shapes,
        pixel_size=pixel_size,
        image_ext=image_ext,
        seed=seed,
        path=dest,
    )
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        # Through a file object: np.save(path) would append ".npy" to a ".cs" name.
        np.save(f, array, allow_pickle=False)
    return [Path(dest)]
