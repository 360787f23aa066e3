"""Long-running service processes: the job scheduler and the supervisor ``serve`` uses."""

from .scheduler import Scheduler
from .supervisor import SchedulerProcess, is_loopback, run_server

__all__ = ["Scheduler", "SchedulerProcess", "is_loopback", "run_server"]
