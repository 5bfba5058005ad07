"""Step `front`: the front's deployment, as a Cloud Functions 2nd-gen function from
`main.py` (default) or, with `--front run`, a Cloud Run service from the deployer's image.

Not built yet: this step says so and changes nothing, and `Setup.front_url` stays None
(what to paste then shows a placeholder). Its grants are already in `roles.py`
(allUsers run.invoker on the function's underlying service, applied by `service grants`
once the service exists); Cloud Build's account, which builds a function, gets its own
grants here when this step is built.
"""

from __future__ import annotations

from deployer.setup.context import Setup
from deployer.setup.steps import Outcome, StepResult

STEP = "front"


def deploy_front(setup: Setup) -> StepResult:
    return StepResult(STEP, Outcome.UNCHANGED, "not deployed by setup yet: deploy main.py by hand")
