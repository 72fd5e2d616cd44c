"""imageq worker: the API client, the job store and the Celery tasks that drive jobs."""
