"""Imports every registry's members (datasets, models, samplers, losses, schedules, methods)."""

from ltsearch import data, losses, methods, models, schedules  # noqa: F401
