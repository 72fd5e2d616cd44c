"""The benchmark: imageq against the naive sleeping design, on the simulator, at several loads.

`python -m bench.run` runs it and writes `bench/results/report.md` and `plot.png`; see
`bench/run.py` for what runs and `bench/round.py` for what one round measures and how.
"""
