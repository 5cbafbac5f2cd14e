"""`durable ui`: a live web dashboard of workflows, a client of the public gRPC API only.

Install the `ui` extra (Starlette and uvicorn), then run `durable ui` (see docs/dashboard.md).
`create_app(client)` builds the ASGI app around an `durable.aio.AsyncClient`.
"""
