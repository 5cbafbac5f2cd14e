"""The durable workflow coordinator: a gRPC server keeping workflow state in Postgres."""
