"""netlab: an impaired link in user space for tests (see README.md)."""
from . import control
from .control import ControlError, LabError
from .impair import Impairment, ImpairmentError
from .lab import ADDR_A, ADDR_B, Lab, sweep_stale, unavailable_reason

__all__ = ["control", "Lab", "LabError", "ControlError", "Impairment", "ImpairmentError",
           "unavailable_reason", "sweep_stale", "ADDR_A", "ADDR_B"]
