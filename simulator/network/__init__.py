"""Networks: where a device group sits (:mod:`~simulator.network.topology`) and what a
collective over it costs (:mod:`~simulator.network.collectives`).

>>> from simulator.arch.loader import load_arch
>>> two = load_arch("dgx-a100", ["count=16"])
>>> r = collective("allreduce", 1e9, route_for(two, tuple(range(16))))
>>> r.algorithm, len(links_used(two, tuple(range(16))))
('ring', 32)
"""

from simulator.network.collectives import (
    ALGORITHMS,
    PROTOCOLS,
    CollectiveTime,
    NcclModel,
    Phase,
    candidates,
    collective,
)
from simulator.network.topology import (
    Route,
    TorusDim,
    fabric_of,
    links_used,
    nics_of,
    node_of,
    route_for,
)

__all__ = ["ALGORITHMS", "PROTOCOLS", "CollectiveTime", "NcclModel", "Phase", "Route", "TorusDim", "candidates",
           "collective", "fabric_of", "links_used", "nics_of", "node_of", "route_for"]
