"""Operator tools: health checks, the live view over all jobs, a batch's HTML report."""
