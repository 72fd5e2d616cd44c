"""Scheduled bulk runs: the schedule file, the beat scheduler and the task each tick sends."""
