"""Named points in a run where a test may have the worker killed, as if from outside.

    DEPLOYER_KILL_AT=build.submitted    SIGKILL this process when its run reaches that point

Only a deploy's first run is ever killed (its resumption must get through), and
nothing happens unless the variable is set: production never sets it. The
points are the boundaries a worker can die on for real; tests kill the worker
at each and check the deploy still ends true (the kill matrix tests):

    build.submitted  build.running  deploy.created  ready.waiting  health.probing
    promote.step1 .. promote.stepN (after step N was routed, before its gate)
    analysis.stepP (the step at P % judged and saved, before the next step)
    watch.window (a window of the watch judged and saved)
    predeploy.running  postdeploy.running (the hook's execution started, not waited for)
    approval.parking (about to park)  approval.parked (parked, its lock not yet paused)
    approval.deciding (the first run after a park, before it reads the votes)
    succeeded.done, failed.done ... (the run ended so, before its end is saved and told)
"""

from __future__ import annotations

import os
import signal

KILL_AT = "DEPLOYER_KILL_AT"


def reached(point: str, attempt: int) -> None:
    """SIGKILL this process if `point` is the one named and this is the deploy's first run."""
    if attempt <= 1 and os.environ.get(KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)
