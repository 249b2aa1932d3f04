"""Physically motivated simulator of Sentinel-1/2 target pairs and aerial RGB source images."""

from cloudxfer.sim.cli import main
from cloudxfer.sim.generate import generate_source, generate_target

__all__ = ["generate_source", "generate_target", "main"]
