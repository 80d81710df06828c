"""Hypothesis profiles for the whole suite.

By default every property and fuzz test is derandomized: the examples are a function of the
test and the code, so a run on CI, the README's test command and a developer's run draw the
same cases and a red CI can be reproduced exactly. ``HWSIM_HYPOTHESIS=random`` draws fresh
random cases (with ``HWSIM_LAW_SCALE`` for more of them): the soak run that looks for new
counterexamples, whose finds become regression cases in the tests.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None,
                          print_blob=True)
settings.register_profile("random", print_blob=True)
settings.load_profile("random" if os.environ.get("HWSIM_HYPOTHESIS") == "random"
                      else "deterministic")
