"""What each task does, apart from Celery: read the job, do one thing, write the outcome with a
compare-and-set, and return the follow-up actions for the task to schedule.

A step that loses a compare-and-set (a duplicate or stale message) changes nothing and returns
no actions, so redeliveries can never fork a chain, submit twice, or finish a job twice.
"""
