"""The LogSettings RPC's messages <-> plain setting values (bool, int, str)."""

from __future__ import annotations

from collections.abc import Mapping

from server.errors import InvalidArgumentError
from server.grpc.generated import grpc_service_pb2 as pb
from server.observability.logs import SettingValue


def settings_from_proto(
    settings: Mapping[str, pb.LogSettingsRequest.SettingValue],
) -> dict[str, SettingValue]:
    values: dict[str, SettingValue] = {}
    for key, value in settings.items():
        field = value.WhichOneof("parameter_choice")
        if field is None:
            raise InvalidArgumentError(f"log setting '{key}': no value given")
        values[key] = getattr(value, field)
    return values


def settings_to_proto(settings: Mapping[str, SettingValue]) -> pb.LogSettingsResponse:
    value = pb.LogSettingsResponse.SettingValue
    response = pb.LogSettingsResponse()
    for key, setting in settings.items():
        if isinstance(setting, bool):
            response.settings[key].CopyFrom(value(bool_param=setting))
        elif isinstance(setting, int):
            response.settings[key].CopyFrom(value(uint32_param=setting))
        else:
            response.settings[key].CopyFrom(value(string_param=setting))
    return response
