"""``hwsim.explore``: design-space studies (see :mod:`simulator.explore`).

>>> import hwsim
>>> hwsim.explore.load  # doctest: +ELLIPSIS
<function load at ...>
"""

from simulator.explore import (
    Progress,
    Study,
    StudyError,
    StudyRun,
    front,
    load,
    load_study,
    run_study,
)

__all__ = ["load", "load_study", "run_study", "front", "Study", "StudyError", "StudyRun",
           "Progress"]
