"""Serving simulation: requests, continuous batching, paged KV cache, replicas and a router,
on top of the prediction pipeline (see :mod:`simulator.serve.api`)."""

from simulator.serve.api import ServeOptions, ServeResult, serve
from simulator.serve.iteration import Batch, IterationModel
from simulator.serve.planner import PlanResult, fleet_system, plan
from simulator.serve.requests import Lengths, Request, load_trace

__all__ = ["serve", "ServeOptions", "ServeResult", "IterationModel", "Batch", "Request",
           "Lengths", "load_trace", "plan", "PlanResult", "fleet_system"]
