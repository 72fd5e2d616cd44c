"""The `imageq` command line.

Exit codes, for scripts:
  0  done: the job(s) succeeded (or, without --wait, were queued)
  1  some job did not succeed (failed, timed out, cancelled), or some rows were skipped
  2  bad usage or invalid input: nothing was queued
  3  no such job or batch
  4  gave up waiting (--timeout)
  5  Redis (the broker or the job store) did not answer
  130  interrupted (Ctrl-C): jobs already queued keep running; bulk prints how to resume
"""
