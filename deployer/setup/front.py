"""Step `front`: the front's deployment, as a Cloud Functions 2nd-gen function from
`main.py` (default, `front_function`) or, with `--front run`, a Cloud Run service from
the deployer's image (`front_service`). Either way it is named `deployer`, runs as
deployer-front@ with the environment `front_env` lists, and its URL, read back from
Google, becomes `Setup.front_url` (what to paste into Slack and GitHub).

Who may call it is granted next, by `service grants`: allUsers run.invoker on the
Cloud Run service (a 2nd-gen function's underlying service has the function's name).
"""

from __future__ import annotations

from deployer.setup.context import Setup
from deployer.setup.front_function import deploy_function
from deployer.setup.front_service import deploy_service
from deployer.setup.names import FRONT_FUNCTION
from deployer.setup.steps import StepResult

STEP = "front"


def deploy_front(setup: Setup) -> StepResult:
    if setup.front == FRONT_FUNCTION:
        return deploy_function(setup)
    return deploy_service(setup)
