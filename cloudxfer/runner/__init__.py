"""The experiment runner: methods as data, runs as data, their execution and reuse."""

from cloudxfer.runner.executor import RunnerError, execute
from cloudxfer.runner.methods import METHODS, Method, method, upstream_closure
from cloudxfer.runner.plan import PlannedRun, Setting, plan

__all__ = [
    "METHODS",
    "Method",
    "PlannedRun",
    "RunnerError",
    "Setting",
    "execute",
    "method",
    "plan",
    "upstream_closure",
]
