"""Spec validators for the simulators: the shared interface (base.py), the strict unknown-field
walker (walk.py) and the OpenAPI 3.0 implementation (oas30.py). See tests/simkit/README.md."""

from .base import NO_BODY, Match, Operation, PathTemplates, Problem, SpecValidator
from .oas30 import OpenApi30
from .walk import StrictWalker

__all__ = ["NO_BODY", "Match", "Operation", "PathTemplates", "Problem", "SpecValidator",
           "OpenApi30", "StrictWalker"]
