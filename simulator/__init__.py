"""A loopback HTTP server that speaks the aireiter API contract, with injectable faults.

Tests use `server.SimulatorServer` (a background thread) or `server.start_simulator_process`
(a child process); `python -m imageq.simulator` serves from the command line.
"""

import importlib.util

# The simulator is an extra: without aiohttp, say what to install rather than fail deep inside.
if importlib.util.find_spec("aiohttp") is None:
    raise ModuleNotFoundError(
        "the API simulator needs aiohttp, which imageq installs only with an extra: "
        "pip install 'imageq[simulator]' (or 'imageq[demo]' for the whole demo)",
        name="aiohttp",
    )
