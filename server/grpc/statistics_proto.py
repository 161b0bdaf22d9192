"""Per-version statistics -> the protocol's ModelStatisticsResponse (Triton's field meanings)."""

from __future__ import annotations

from collections.abc import Iterable

from server.grpc.generated import grpc_service_pb2 as pb
from server.observability.statistics import Duration, VersionStatistics


def to_proto(statistics: Iterable[VersionStatistics]) -> pb.ModelStatisticsResponse:
    return pb.ModelStatisticsResponse(model_stats=[_model(s) for s in statistics])


def _model(s: VersionStatistics) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=s.name,
        version=s.version,
        last_inference=s.last_inference_ms,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(s.success),
            fail=_duration(s.fail),
            queue=_duration(s.queue),
            compute_input=_duration(s.compute_input),
            compute_infer=_duration(s.compute_infer),
            compute_output=_duration(s.compute_output),
            cache_hit=_duration(s.cache_hit),
            cache_miss=_duration(s.cache_miss),
        ),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=rows,
                compute_input=pb.StatisticDuration(count=b.count, ns=b.input_ns),
                compute_infer=pb.StatisticDuration(count=b.count, ns=b.infer_ns),
                compute_output=pb.StatisticDuration(count=b.count, ns=b.output_ns),
            )
            for rows, b in sorted(s.batches.items())
        ],
    )


def _duration(d: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=d.count, ns=d.ns)
