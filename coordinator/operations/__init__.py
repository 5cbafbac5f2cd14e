"""OperationsService: retention, deleting workflows, bulk actions, pausing queues."""
