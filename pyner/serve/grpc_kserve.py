"""KServe Open Inference Protocol v2 (inference.GRPCInferenceService): protobuf <-> runtime types.

The model takes one BYTES input (any name; "TEXT" in the metadata) of UTF-8 texts, in
`contents.bytes_contents` or in `raw_input_contents` (each element: 4-byte little-endian length,
then the bytes), and answers one BYTES output "ENTITIES" of the same shape: per text, a JSON array
of the pipeline's entity dicts. Request parameter "aggregation" (string) picks the strategy. The
answer uses the raw form when the request did (as Triton does), `contents` otherwise.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from .. import __version__
from ..decode import check_aggregation
from ..errors import InputError, NotFound
from . import protos
from .rpc import deadline_of, handle

pb, pb_grpc = protos.kserve()

API = "kserve.v2"
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
INPUT, OUTPUT = "TEXT", "ENTITIES"


def unpack_bytes(raw: bytes, where: str) -> list[bytes]:
    """Split the raw BYTES form: each element a 4-byte little-endian length, then that many bytes."""
    out, i, n = [], 0, len(raw)
    while i < n:
        if i + 4 > n:
            raise InputError(f"{where}: raw BYTES contents end inside the 4-byte length of element {len(out)}")
        (size,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + size > n:
            raise InputError(f"{where}: raw BYTES element {len(out)} claims {size} bytes but only {n - i} remain")
        out.append(raw[i:i + size])
        i += size
    return out


def pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def texts_of(request) -> tuple[list[str], Any, bool]:
    """The texts of a ModelInferRequest, the input's shape, and whether the raw form was used."""
    if len(request.inputs) != 1:
        raise InputError(f"the model takes exactly one BYTES input ({INPUT!r}); the request has {len(request.inputs)}")
    tensor = request.inputs[0]
    where = f"input {tensor.name!r}"
    if tensor.datatype != "BYTES":
        raise InputError(f"{where}: datatype {tensor.datatype!r}; the model takes BYTES (UTF-8 texts)")
    raw = len(request.raw_input_contents) > 0
    if raw:
        if len(request.raw_input_contents) != 1:
            raise InputError(f"raw_input_contents has {len(request.raw_input_contents)} entries for 1 input")
        items = unpack_bytes(request.raw_input_contents[0], where)
    else:
        items = list(tensor.contents.bytes_contents)
    check_shape(list(tensor.shape), len(items), where)
    texts = []
    for i, b in enumerate(items):
        try:
            texts.append(b.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: element {i} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    for o in request.outputs:
        if o.name != OUTPUT:
            raise InputError(f"unknown output {o.name!r}; the model's output is {OUTPUT!r}")
    return texts, list(tensor.shape), raw


def check_shape(shape: list[int], n: int, where: str) -> None:
    """A request's shape is concrete: at least one dimension, none negative (-1 is only for metadata),
    holding exactly the n elements sent (the model answers in the same shape)."""
    if not shape:
        raise InputError(f"{where}: shape [] is a scalar; send shape [N] for N texts ({n} elements were sent)")
    bad = [d for d in shape if d < 0]
    if bad:
        raise InputError(f"{where}: shape {shape} has a negative dimension ({bad[0]}); a request's shape is concrete: "
                         f"[{n}] for the {n} elements sent")
    count = 1
    for d in shape:
        count *= d
    if count != n:
        raise InputError(f"{where}: shape {shape} holds {count} elements but {n} were sent")


def _param(request, name: str, default: str) -> str:
    if name not in request.parameters:
        return default
    p = request.parameters[name]
    if p.WhichOneof("parameter_choice") != "string_param":
        raise InputError(f"parameter {name!r} must be a string")
    return p.string_param


def _json_default(x):
    return float(x) if hasattr(x, "__float__") else str(x)


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, state):
        self.state = state

    def _check_model(self, name: str, version: str) -> None:
        info = self.state.info
        if name != info["name"] or version not in ("", "1"):
            raise NotFound(f"model {name!r} version {version!r} is not served here; this server serves {info['name']!r} version '1'")

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.state.ready)

    async def ModelReady(self, request, context):
        async def body():
            if self.state.info is None:
                return pb.ModelReadyResponse(ready=False)
            self._check_model(request.name, request.version)
            return pb.ModelReadyResponse(ready=self.state.ready)

        return await handle(API, "ModelReady", self.state.metrics, context, body)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="pyner", version=__version__, extensions=[])

    async def ModelMetadata(self, request, context):
        async def body():
            self.state.require_ready()
            self._check_model(request.name, request.version)
            T = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=self.state.info["name"], versions=["1"], platform="pyner_onnxruntime",
                inputs=[T(name=INPUT, datatype="BYTES", shape=[-1])], outputs=[T(name=OUTPUT, datatype="BYTES", shape=[-1])])

        return await handle(API, "ModelMetadata", self.state.metrics, context, body)

    async def ModelInfer(self, request, context):
        async def body():
            batcher = self.state.require_ready()
            self._check_model(request.model_name, request.model_version)
            texts, shape, raw = texts_of(request)
            aggregation = check_aggregation(_param(request, "aggregation", "simple"))
            results = await batcher.submit(texts, aggregation=aggregation, deadline=deadline_of(context))
            items = [json.dumps(r.entities, ensure_ascii=False, default=_json_default).encode("utf-8") for r in results]
            out = pb.ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype="BYTES", shape=shape)
            resp = pb.ModelInferResponse(model_name=self.state.info["name"], model_version="1", id=request.id)
            if raw:
                resp.raw_output_contents.append(pack_bytes(items))
            else:
                out.contents.bytes_contents.extend(items)
            resp.outputs.append(out)
            return resp

        return await handle(API, "ModelInfer", self.state.metrics, context, body, request.id)


def add_to_server(state, server) -> str:
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(KServeServicer(state), server)
    return SERVICE
