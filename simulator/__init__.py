"""A loopback HTTP server that speaks the aireiter API contract, with injectable faults.

Tests use `server.SimulatorServer` (a background thread) or `server.start_simulator_process`
(a child process); `python -m imageq.simulator` serves from the command line.
"""
