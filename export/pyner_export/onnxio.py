"""How the export stage writes ONNX files: weights as external data in one file, and the artifact's layout.

Every intermediate graph (raw export, fused, fp16, int8) is written as `<dir>/model.onnx` with all
its initializers in ONE file `<dir>/model.onnx.data` (`save`): protobuf cannot hold more than 2 GiB,
and serializing a graph with embedded weights makes a second in-memory copy of them. The artifact's
model is then either moved as it is (external data) or rewritten with its weights embedded
(`place`), as `pyner package --external-data auto|always|never` decides (`wants_external`).
ONNX Runtime (Python and Java) loads `model.onnx` by path and finds the data file beside it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pyner import artifact as art
from pyner.errors import UsageError

EXTERNAL_DATA_MODES = ("auto", "always", "never")
# protobuf's hard limit for one message is 2 GiB; graph, names and attributes need room beside the weights
SINGLE_FILE_LIMIT = 2 * 1024 ** 3 - 64 * 1024 ** 2


def data_file(model: Path) -> Path:
    return model.with_name(model.name + ".data")


def save(model_proto, path: Path) -> None:
    """Write `model_proto` to `path` with every initializer over 1 KiB in `path`.data (one file)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, data_file(path)):
        if stale.exists():
            stale.unlink()  # onnx appends to an existing data file
    onnx.save_model(model_proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_file(path).name, size_threshold=1024)
    share_modes(path.parent)


def share_modes(folder: Path) -> None:
    """Give the files in `folder` the umask's mode: onnx writes external data files 0600, which a
    container's non-root user could not read in an artifact that root packaged."""
    mask = os.umask(0)
    os.umask(mask)
    for f in Path(folder).iterdir():
        if f.is_file() and not f.is_symlink():
            os.chmod(f, 0o666 & ~mask)


def external_locations(path: Path) -> set[str]:
    """The external-data files `path`'s initializers point at (read without loading the weights)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    out = set()
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            out.update(e.value for e in init.external_data if e.key == "location")
    return out


def _tensors(model):
    """Every tensor of the main graph that can hold weights: initializers and Constant values."""
    yield from model.graph.initializer
    for node in model.graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t


def graph_bytes(path: Path) -> int:
    """Bytes of the graph at `path` with all its weights (embedded or external), read without loading them."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    total = model.ByteSize()
    for t in _tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in t.external_data}
            total += int(info["length"]) if "length" in info else (Path(path).parent / info["location"]).stat().st_size
    return total


ALIGN = 4096  # tensor offsets in the data file are page-aligned (lets ONNX Runtime map them)
COPY_CHUNK = 64 * 1024 ** 2


def external_range(tensor, folder: Path) -> tuple[Path, int, int]:
    """(file, offset, length) of an external tensor's bytes (a missing length: to the end of the file)."""
    info = {e.key: e.value for e in tensor.external_data}
    file = Path(folder) / info["location"]
    start = int(info.get("offset", 0))
    return file, start, int(info["length"]) if "length" in info else file.stat().st_size - start


def read_range(file: Path, start: int, length: int):
    """The bytes [start, start + length) of `file`, in chunks of at most COPY_CHUNK."""
    with open(file, "rb") as f:
        f.seek(start)
        left = length
        while left:
            block = f.read(min(COPY_CHUNK, left))
            if not block:
                raise RuntimeError(f"{file}: shorter than the tensors pointing into it say")
            yield block
            left -= len(block)


class DataFile:
    """One external-data file being written: each tensor's bytes appended at a page-aligned offset, and the
    tensor pointed at them (the layout of every data file pyner writes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0

    def __enter__(self) -> "DataFile":
        self.out = open(self.path, "wb")
        return self

    def __exit__(self, *exc) -> bool:
        self.out.close()
        return False

    def add(self, tensor, chunks) -> None:
        import onnx

        start = self.offset
        for chunk in chunks:
            self.out.write(chunk)
            self.offset += len(chunk)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", self.path.name), ("offset", str(start)), ("length", str(self.offset - start))):
            e = tensor.external_data.add()
            e.key, e.value = key, value
        pad = -self.offset % ALIGN
        self.out.write(b"\0" * pad)
        self.offset += pad


def consolidate(src: Path, dst: Path) -> None:
    """Write the graph `src` as `dst` + `dst`.data holding every tensor over 1 KiB, streaming the bytes
    from `src`'s external files (or its embedded raw data) in chunks: memory stays at one chunk, not the
    model (the raw export of a 2 GB model has one file per tensor)."""
    import onnx

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)
    with DataFile(data_file(dst)) as data:
        for t in _tensors(model):
            if t.data_location == onnx.TensorProto.EXTERNAL:
                file, start, length = external_range(t, src.parent)
                data.add(t, read_range(file, start, length))
            elif t.HasField("raw_data") and len(t.raw_data) > 1024:
                raw = t.raw_data
                t.ClearField("raw_data")
                data.add(t, [raw])
    onnx.save_model(model, str(dst))
    share_modes(dst.parent)


def check_layout(path: Path) -> None:
    """Refuse a graph whose weights live anywhere but in `path` itself or `path`.data."""
    bad = external_locations(path) - {data_file(path).name}
    if bad:
        raise RuntimeError(f"{path}: external data in unexpected files {sorted(bad)} (expected {data_file(path).name})")


def total_bytes(path: Path) -> int:
    """Size of the graph with its weights: model.onnx plus model.onnx.data when present."""
    d = data_file(path)
    return path.stat().st_size + (d.stat().st_size if d.exists() else 0)


def check_mode(mode: str) -> str:
    if mode not in EXTERNAL_DATA_MODES:
        raise UsageError(f"unknown --external-data {mode!r}; choose one of: {', '.join(EXTERNAL_DATA_MODES)}")
    return mode


def wants_external(mode: str, nbytes: int, precision: str) -> bool:
    """Whether the artifact's model keeps its weights in model.onnx.data (UsageError when `never` cannot fit)."""
    if mode == "always":
        return True
    too_big = nbytes > SINGLE_FILE_LIMIT
    if mode == "never" and too_big:
        raise UsageError(
            f"the {precision} model is {nbytes / 1e9:.2f} GB, more than one ONNX file can hold (2 GiB, a protobuf limit)",
            hint="use --external-data auto (the default): the weights go to model.onnx.data beside model.onnx",
        )
    return too_big


def place(src: Path, folder: Path, *, external: bool) -> str | None:
    """Put the graph `src` (written by `save`, or a single file) into the artifact folder as model.onnx;
    return the external-data file name recorded in the manifest (None: weights embedded).

    External: the two files are moved (same file system: a rename), or the weights are streamed into
    model.onnx.data (`consolidate`). Embedded: the graph is loaded once and written as one file."""
    import onnx

    src = Path(src)
    dst = Path(folder) / art.MODEL_FILE
    locations = external_locations(src)
    if external:
        if locations == {data_file(src).name} and src.name == art.MODEL_FILE:
            os.replace(src, dst)
            os.replace(data_file(src), data_file(dst))
            share_modes(dst.parent)
        else:  # the fused graph over the raw export's files (one per tensor), or embedded weights
            consolidate(src, dst)
        check_layout(dst)
        return data_file(dst).name
    write_embedded(src, dst)  # also when nothing is outside: one encoding of a model, whatever path made it
    return None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int) -> bytes:
    return _varint(field << 3 | 2)  # a length-delimited field


# field numbers in onnx.proto: ModelProto.graph, GraphProto.initializer, TensorProto.raw_data
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9


def write_embedded(src: Path, dst: Path) -> None:
    """Write the graph `src` (weights in external files) as ONE file `dst` with the weights embedded,
    streaming each tensor's bytes from its file into the protobuf encoding: memory stays at one chunk.
    (`onnx.save_model` on the loaded model holds the weights, their serialized copy and the encoder's
    buffers at once: five times BERT-large's 1.3 GB.) The graph's other fields are written first, then its
    initializers in their order: protobuf readers accept fields in any order, so ONNX Runtime and onnx
    read the same model as from `onnx.save_model`."""
    import onnx

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)
    # One encoding whatever path made the model: a tensor that is embedded has no data_location field
    # (onnx writes DEFAULT explicitly on tensors it has moved back in, the converters do not), so the same
    # model gives the same bytes, and the manifest the same sha256, however its weights travelled.
    for node in model.graph.node:  # Constant values kept outside (small): embedded the ordinary way
        for a in node.attribute:
            if not a.HasField("t"):
                continue
            if a.t.data_location == onnx.TensorProto.EXTERNAL:
                onnx.external_data_helper.load_external_data_for_tensor(a.t, str(src.parent))
                del a.t.external_data[:]
            a.t.ClearField("data_location")
    parts = []  # (tensor header bytes, (file, offset, length) of its raw data or None)
    for init in model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            init.ClearField("data_location")
            parts.append((init.SerializeToString(), None))
            continue
        file, start, length = external_range(init, src.parent)
        head = onnx.TensorProto()
        head.CopyFrom(init)
        head.ClearField("data_location")
        del head.external_data[:]
        parts.append((head.SerializeToString() + _key(_TENSOR_RAW_DATA) + _varint(length), (file, start, length)))
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    del graph.initializer[:]
    rest = onnx.ModelProto()
    rest.CopyFrom(model)
    rest.ClearField("graph")
    del model
    sizes = [len(h) + (ext[2] if ext else 0) for h, ext in parts]
    graph_body = graph.SerializeToString()
    graph_len = len(graph_body) + sum(len(_key(_GRAPH_INITIALIZER)) + len(_varint(n)) + n for n in sizes)
    with open(dst, "wb") as out:
        out.write(rest.SerializeToString())
        out.write(_key(_MODEL_GRAPH) + _varint(graph_len))
        out.write(graph_body)
        for (head, ext), size in zip(parts, sizes):
            out.write(_key(_GRAPH_INITIALIZER) + _varint(size))
            out.write(head)
            if ext is None:
                continue
            for block in read_range(*ext):
                out.write(block)
    share_modes(dst.parent)


PARK_MIN_BYTES = 1 << 20


def park_weights(model, folder: Path) -> dict:
    """Replace every float32 initializer of 1 MiB or more in `model` (weights not loaded; external files in
    `folder`) by a one-row stand-in and return the originals by name: for ONNX Runtime's fp16 converter,
    which only looks at an initializer's type and users to decide, but would hold the float32 and float16
    copies of every weight at once (value infos it derives from a stand-in get their shape back). `unpark(..., to_fp16=...)` writes
    the real ones, converted where the converter made the stand-in float16."""
    return _park(model, folder, lambda name, uses: True)


def park_all_but(model, folder: Path, keep: set[str]) -> dict:
    """Replace every float32 initializer of 1 MiB or more not named in `keep` by a stand-in with its type and
    shape but no data: for ONNX Runtime's quantizer, which holds about three copies of the weights it is
    given, reads only those of the nodes it quantizes (`keep`) and infers shapes from the rest (so they keep
    their shape). `unpark` puts the originals back."""
    return _park(model, folder, lambda name, uses: name not in keep, keep_shape=True)


def _park(model, folder: Path, wanted, *, keep_shape: bool = False) -> dict:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    users: dict[str, list[tuple[str, int]]] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            users.setdefault(name, []).append((node.op_type, k))
    parked = {}
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in init.external_data}
            nbytes = int(info["length"]) if "length" in info else (Path(folder) / info["location"]).stat().st_size
        else:
            nbytes = len(init.raw_data)
        if (nbytes < PARK_MIN_BYTES or len(init.dims) < 1 or init.data_type != onnx.TensorProto.FLOAT
                or not wanted(init.name, users.get(init.name, []))):
            continue
        original = onnx.TensorProto()
        original.CopyFrom(init)
        if keep_shape:
            init.CopyFrom(onnx.TensorProto(name=init.name, dims=list(init.dims), data_type=init.data_type))
        else:
            init.CopyFrom(numpy_helper.from_array(
                np.zeros([1, *init.dims[1:]], dtype=helper.tensor_dtype_to_np_dtype(init.data_type)), init.name))
        parked[init.name] = original
    return parked


def _rows(tensor, folder: Path, rows: int = 16384):
    """The float32 table `tensor` (external in `folder`, or embedded) as numpy blocks of `rows` rows."""
    import numpy as np
    import onnx

    width = int(np.prod(tensor.dims[1:]))
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        data = np.frombuffer(tensor.raw_data, dtype=np.float32).reshape(-1, width)
        for r in range(0, data.shape[0], rows):
            yield data[r:r + rows]
        return
    file, start, _ = external_range(tensor, folder)
    with open(file, "rb") as f:
        f.seek(start)
        left = int(tensor.dims[0])
        while left:
            n = min(rows, left)
            yield np.frombuffer(f.read(n * width * 4), dtype=np.float32).reshape(n, width)
            left -= n


def unpark(path: Path, parked: dict, *, source: Path | None = None, to_fp16=None) -> None:
    """Put the parked initializers back into the graph at `path`. As they were (references to the source's
    external data, which must then be in `path`'s folder), or, when `to_fp16` (the converter's own array
    conversion) is given, written block by block into one data file beside `path` (`source`: the folder of
    the originals): converted where the converter made the stand-in float16, copied where it kept float32.
    Value infos the converter derived from a stand-in get the real shape back."""
    import onnx

    if not parked:
        return
    path = Path(path)
    graph = onnx.load(str(path), load_external_data=False)
    found = set()
    with DataFile(path.with_name(f"{path.stem}.parked.data")) if to_fp16 is not None else contextlib.nullcontext() as data:
        for init in graph.graph.initializer:
            original = parked.get(init.name)
            if original is None:
                continue
            found.add(init.name)
            if to_fp16 is None:
                init.CopyFrom(original)
                continue
            half = init.data_type == onnx.TensorProto.FLOAT16
            del init.dims[:]
            init.dims.extend(original.dims)
            init.ClearField("raw_data")
            data.add(init, ((to_fp16(block).astype("float16") if half else block).tobytes()
                            for block in _rows(original, source or path.parent)))
    if found != set(parked):
        raise RuntimeError(f"{path}: the conversion dropped the initializers {sorted(set(parked) - found)}")
    for vi in graph.graph.value_info:
        original = parked.get(vi.name)
        if original is not None and vi.type.tensor_type.HasField("shape"):
            del vi.type.tensor_type.shape.dim[:]
            for d in original.dims:
                vi.type.tensor_type.shape.dim.add().dim_value = d
    onnx.save_model(graph, str(path))
