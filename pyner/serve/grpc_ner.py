"""pyner.v1.NerService: protobuf <-> runtime types, nothing else (the batcher does the work)."""

from __future__ import annotations

import bisect
from typing import Any, Sequence

from ..decode import check_aggregation
from . import protos
from .rpc import deadline_of, handle

pb, pb_grpc = protos.pyner_v1()

API = "pyner.v1"
SERVICE = pb.DESCRIPTOR.services_by_name["NerService"].full_name


class Utf16Offsets:
    """Code-point offsets -> UTF-16 code-unit offsets of one text (differ after non-BMP characters)."""

    def __init__(self, text: str):
        self._astral: list[int] = []
        if len(text.encode("utf-16-le")) != 2 * len(text):
            self._astral = [i for i, c in enumerate(text) if ord(c) > 0xFFFF]

    def __call__(self, cp: int) -> int:
        return cp + bisect.bisect_left(self._astral, cp) if self._astral else cp


def entity_pb(e: dict[str, Any], utf16: Utf16Offsets):
    start, end = int(e["start"]), int(e["end"])
    return pb.Entity(
        label=e.get("entity_group", e.get("entity", "")),
        score=float(e["score"]),
        word=e.get("word", ""),
        start=start,
        end=end,
        start_utf16=utf16(start),
        end_utf16=utf16(end),
        index=int(e["index"]) if "index" in e else -1,
    )


def results_pb(texts: Sequence[str], results) -> list:
    out = []
    for text, r in zip(texts, results):
        utf16 = Utf16Offsets(text)
        out.append(pb.TextResult(entities=[entity_pb(e, utf16) for e in r.entities], num_tokens=r.n_tokens, num_windows=r.n_windows))
    return out


def model_info_pb(info: dict[str, Any]):
    return pb.ModelInfo(**info)


class NerServicer(pb_grpc.NerServiceServicer):
    def __init__(self, state):
        self.state = state

    async def Recognize(self, request, context):
        async def body():
            batcher = self.state.require_ready()
            aggregation = check_aggregation(request.aggregation or "simple")
            # the repeated field as it is: the batcher checks its size before reading it (once per request)
            ignore = request.ignore_labels.labels if request.HasField("ignore_labels") else None
            texts = list(request.texts)
            results = await batcher.submit(texts, aggregation=aggregation, ignore_labels=ignore, deadline=deadline_of(context))
            info = self.state.info
            return pb.RecognizeResponse(results=results_pb(texts, results), request_id=request.request_id,
                                        model_name=info["name"], artifact_digest=info["artifact_digest"])

        return await handle(API, "Recognize", self.state.metrics, context, body, request.request_id)

    async def GetModelInfo(self, request, context):
        async def body():
            self.state.require_ready()
            return model_info_pb(self.state.info)

        return await handle(API, "GetModelInfo", self.state.metrics, context, body)


def add_to_server(state, server) -> str:
    pb_grpc.add_NerServiceServicer_to_server(NerServicer(state), server)
    return SERVICE
