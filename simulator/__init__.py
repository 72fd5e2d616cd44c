"""A loopback HTTP server that speaks the aireiter API contract, with injectable faults.

Tests use `SimulatorServer` (a background thread) or `start_simulator_process` (a child process).
"""

import importlib.util

# The simulator is an extra: without aiohttp, say what to install rather than fail deep inside.
if importlib.util.find_spec("aiohttp") is None:
    raise ModuleNotFoundError(
        "the API simulator needs aiohttp, which imageq installs only with an extra: "
        "pip install 'imageq[simulator]' (or 'imageq[demo]' for the whole demo)",
        name="aiohttp",
    )

from imageq.simulator.routes import create_app
from imageq.simulator.server import SimulatorServer, start_simulator_process
from imageq.simulator.sim_config import SimConfig

__all__ = ["SimConfig", "SimulatorServer", "create_app", "start_simulator_process"]
