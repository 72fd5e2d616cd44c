"""The imageq worker: the Celery process at this level (app, signals, tasks, messages, runtime,
poller, broker, logs, metrics and the cluster's, the exception tree), and its parts beneath:
`domain` (the model and its transitions), `policy` (pure decisions), `upstream` (the API),
`webhooks`, `outputs`, `store` and `steps` (what each task does)."""
