"""The domain model: statuses, the job and batch records, generation parameters and sizes, the
completion payload and its schema, and the record's transitions. Pure: no I/O."""
