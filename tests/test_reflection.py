"""Server reflection: generic tools (grpcurl, buf curl, Postman) discover the API unaided."""

from __future__ import annotations

from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.support import Coordinator


def test_reflection_lists_the_services_and_describes_every_rpc(coordinator: Coordinator) -> None:
    database = ProtoReflectionDescriptorDatabase(coordinator.channel)
    services = set(database.get_services())
    assert {
        "durable.v1.CoordinatorService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services

    service = DescriptorPool(database).FindServiceByName("durable.v1.CoordinatorService")
    methods = {method.name: method for method in service.methods}
    assert set(methods) >= {
        "StartWorkflow",
        "RunStep",
        "SetEvent",
        "GetEvent",
        "FinishWorkflow",
        "GetWorkflow",
        "AwaitWorkflow",
        "ListSteps",
    }
    assert methods["GetEvent"].output_type.full_name == "durable.v1.GetEventResponse"
