"""A loopback HTTP server that speaks the aireiter API contract, with injectable faults.

Tests use `SimulatorServer` (a background thread) or `start_simulator_process` (a child process).
"""

from imageq.simulator.routes import create_app
from imageq.simulator.server import SimulatorServer, start_simulator_process
from imageq.simulator.sim_config import SimConfig

__all__ = ["SimConfig", "SimulatorServer", "create_app", "start_simulator_process"]
