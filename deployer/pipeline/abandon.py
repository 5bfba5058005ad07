"""Giving a deploy up: what a forced unlock, or a worker lost too often, ends with.

The deploy is marked abandoned with who and why; the build it left running is
cancelled; the traffic that served before it began is put back and verified
(read back), unless it still serves. Runs under the deploy's lock, like any run.
"""

from __future__ import annotations

from deployer.config import Config
from deployer.pipeline.events import DeployFinished, Listener
from deployer.pipeline.lease import Lease
from deployer.pipeline.ports import BuildRejected, Platform
from deployer.pipeline.record import DeployRecord, State
from deployer.pipeline.restore import keep_safe, read_back
from deployer.pipeline.stages import StageRunner
from deployer.store.protocol import Store


def abandon(
    record: DeployRecord,
    who: str,
    reason: str,
    config: Config,
    platform: Platform,
    store: Store,
    listener: Listener,
    lease: Lease | None = None,
) -> DeployRecord:
    """End `record` as abandoned by `who` because `reason`, with its traffic made safe."""
    settings = config.environment(record.environment)
    service = config.target(record.environment)
    runner = StageRunner(record, store, listener, lease=lease)
    record.abandoned_by = who
    record.error = f"abandoned by {who}: {reason}"
    runner.note(record.error)
    if record.build_id and not record.image:
        try:
            platform.builds.cancel(config.service_of(record.environment), record.build_id)
            runner.note(f"build {record.build_id} cancelled")
        except BuildRejected as error:
            runner.note(f"could not cancel build {record.build_id}: {error}")
    if record.kind == "deploy":
        keep_safe(runner, platform.services, service, settings, State.ABANDONED)
    record.state = State.ABANDONED
    record.running_stage = None
    read_back(platform.services, service, record)
    runner.save()
    listener(DeployFinished(record))
    return record
