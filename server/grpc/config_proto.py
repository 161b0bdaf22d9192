"""Our ModelConfig as Triton's ModelConfig message, which tritonclient and perf_analyzer read,
the model metadata as the protocol's ModelMetadataResponse, and config.pbtxt read through the
generated message (server/model_config/pbtxt.py) for app and cli as TRITON_FORMAT."""

from __future__ import annotations

from server import datatypes
from server.dataplane import ModelMetadata
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import model_config_pb2 as mc
from server.model_config import PLATFORM, ModelConfig
from server.model_config.pbtxt import TRITON_CONFIG_FILE, TritonConfigReader
from server.repository.configs import ForeignFormat

# Triton's config.pbtxt read through the generated message, handed to the core by app and cli.
_READER = TritonConfigReader(mc.ModelConfig)
TRITON_FORMAT = ForeignFormat(TRITON_CONFIG_FILE, _READER.load, _READER.parse_json)
_KINDS = {
    "auto": mc.ModelInstanceGroup.KIND_AUTO,
    "cpu": mc.ModelInstanceGroup.KIND_CPU,
    "gpu": mc.ModelInstanceGroup.KIND_GPU,
}
_GPU_PROVIDERS = {
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
    "ROCMExecutionProvider": "rocm",
    "MIGraphXExecutionProvider": "migraphx",
    "DmlExecutionProvider": "dml",
}


def _dtype(name: str) -> int:
    return mc.DataType.Value(datatypes.BY_NAME[name].config_enum)


def to_proto(config: ModelConfig) -> mc.ModelConfig:
    message = mc.ModelConfig(
        name=config.name,
        platform=PLATFORM,
        backend=config.backend,
        max_batch_size=config.max_batch_size or 0,
        input=[
            mc.ModelInput(name=t.name, data_type=_dtype(t.datatype), dims=t.dims)
            for t in config.inputs
        ],
        output=[
            mc.ModelOutput(name=t.name, data_type=_dtype(t.datatype), dims=t.dims)
            for t in config.outputs
        ],
        instance_group=[
            mc.ModelInstanceGroup(
                name=config.name,
                count=config.instance_group.count,
                kind=_KINDS.get(config.instance_group.kind, mc.ModelInstanceGroup.KIND_AUTO),
            )
        ],
        parameters={
            k: mc.ModelParameter(string_value=str(v)) for k, v in config.parameters.items()
        },
    )
    if config.response_cache.enable:
        message.response_cache.enable = True
    policy = config.version_policy
    if policy.all:
        message.version_policy.all.SetInParent()
    elif policy.specific:
        message.version_policy.specific.versions.extend(policy.specific)
    else:
        message.version_policy.latest.num_versions = policy.latest or 1

    dynamic = config.dynamic_batching
    if dynamic is not None:
        batching = message.dynamic_batching
        batching.preferred_batch_size.extend(dynamic.preferred_batch_size)
        batching.max_queue_delay_microseconds = dynamic.max_queue_delay_microseconds
        if dynamic.max_queue_size or dynamic.default_timeout_microseconds:
            batching.default_queue_policy.max_queue_size = dynamic.max_queue_size
            batching.default_queue_policy.default_timeout_microseconds = (
                dynamic.default_timeout_microseconds
            )

    accelerators = message.optimization.execution_accelerators
    for provider in config.execution_providers:
        if provider.name == "CPUExecutionProvider":
            continue
        short = _GPU_PROVIDERS.get(provider.name)
        target = (
            accelerators.gpu_execution_accelerator
            if short
            else accelerators.cpu_execution_accelerator
        )
        short = short or provider.name.removesuffix("ExecutionProvider").lower()
        target.add(name=short, parameters={k: str(v) for k, v in provider.options.items()})

    for warmup in config.model_warmup:
        sample = message.model_warmup.add(
            name=warmup.name, batch_size=warmup.batch_size, count=warmup.count
        )
        for spec in warmup.inputs:
            data = sample.inputs[spec.name]
            data.data_type = _dtype(spec.datatype)
            data.dims.extend(spec.dims)
            if spec.fill == "random":
                data.random_data = True
            else:
                data.zero_data = True
    return message


def metadata_to_proto(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs],
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.outputs],
    )
