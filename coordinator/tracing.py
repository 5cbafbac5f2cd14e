"""Optional OpenTelemetry tracing of RPCs (--otel; needs the `otel` extra).

`configure()` installs the process's TracerProvider, exporting spans as the standard
environment variables say: OTEL_TRACES_EXPORTER (comma-separated exporter names, default
`otlp`; `console` prints spans; `none` exports nothing), OTEL_EXPORTER_OTLP_* for the
OTLP endpoint, OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*.
`server_interceptors()` gives the interceptor that opens one span per gRPC call; it uses
the global provider, so a program embedding serve() may install its own instead.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

import grpc

from coordinator.config import Config

DEFAULT_SERVICE_NAME = "durable-coordinator"
_EXPORTER_GROUP = "opentelemetry_traces_exporter"


class TracingUnavailable(Exception):
    """--otel was asked for, but tracing cannot be set up as configured."""


def _missing(exc: ImportError) -> TracingUnavailable:
    return TracingUnavailable(
        f"--otel needs the OpenTelemetry packages ({exc.name or exc} is missing): "
        "install them with pip install 'durable-coordinator[otel]'"
    )


def _exporters() -> list[Any]:
    names = [
        name.strip().lower()
        for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip()
    ]
    exporters = []
    for name in names:
        if name == "none":
            continue
        found = metadata.entry_points(group=_EXPORTER_GROUP, name=name)
        if not found:
            known = sorted({entry.name for entry in metadata.entry_points(group=_EXPORTER_GROUP)})
            raise TracingUnavailable(
                f"OTEL_TRACES_EXPORTER names {name!r}, which is not installed "
                f"(installed: {', '.join(known) or 'none'})"
            )
        exporter_class = next(iter(found)).load()
        exporters.append(exporter_class())
    return exporters


def configure(enabled: bool) -> None:
    """Install a TracerProvider exporting per the OTEL_* variables; nothing if not `enabled`.

    Raises TracingUnavailable when the packages or the named exporter are missing.
    """
    if not enabled:
        return
    try:
        import opentelemetry.instrumentation.grpc  # noqa: F401  (server_interceptors needs it)
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise _missing(exc) from exc

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # Spans are exported by a background thread, and flushed when the process exits.
    provider = TracerProvider(resource=resource)
    for exporter in _exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def server_interceptors(config: Config) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors server.py installs: one that traces every call, with --otel."""
    if not config.otel:
        return []
    try:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor
    except ImportError as exc:
        raise _missing(exc) from exc
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor()  # type: ignore[no-untyped-call]
    return [interceptor]
