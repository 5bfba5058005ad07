"""What a hook's Cloud Run job holds: pure functions from a `HookSpec` to a `run_v2.Job`,
kept apart from the adapter's calls that send it (`cloud_run_hook_jobs`), as
`cloud_run_template` is for revisions."""

from __future__ import annotations

import math
from typing import Any

from google.cloud import run_v2
from google.protobuf import duration_pb2

from deployer.adapters.cloud_run_template import container_env
from deployer.pipeline.hook_port import HookSpec
from deployer.pipeline.ports import DEPLOY_LABEL


def job_for(spec: HookSpec, reach: run_v2.RevisionTemplate | None = None) -> run_v2.Job:
    """The job that runs `spec`: one task, no retry, the hook's timeout; with `reach` (the
    service's template), its VPC access, volumes and encryption key too, so that a
    migration reaches the database (a Cloud SQL socket, a private address) as the
    revision does."""
    settings = spec.settings
    container = run_v2.Container(
        image=spec.image,
        command=list(spec.command),
        env=container_env(spec.env, spec.secret_env),
        resources=run_v2.ResourceRequirements(
            limits={"cpu": settings.cpu, "memory": settings.memory}
        ),
    )
    task = run_v2.TaskTemplate(
        containers=[container],
        max_retries=0,
        timeout=duration_pb2.Duration(seconds=max(1, math.ceil(spec.timeout))),
        service_account=settings.service_account or "",
    )
    if reach is not None:
        # The same messages in RevisionTemplate and TaskTemplate (revision_template.py,
        # task_template.py: vpc_access, volumes, encryption_key).
        if run_v2.RevisionTemplate.pb(reach).HasField("vpc_access"):
            task.vpc_access = reach.vpc_access
        task.volumes = list(reach.volumes)
        task.encryption_key = reach.encryption_key
        if reach.containers:
            # Set on the task's own copy: proto-plus copied `container` into it.
            task.containers[0].volume_mounts = list(reach.containers[0].volume_mounts)
    return run_v2.Job(
        labels={key: value for key, value in spec.labels.items() if key != DEPLOY_LABEL},
        template=run_v2.ExecutionTemplate(
            labels=dict(spec.labels), task_count=1, parallelism=1, template=task
        ),
    )


def same_template(current: run_v2.Job, wanted: run_v2.Job) -> bool:
    """Whether `current` already runs what `wanted` says (the fields the deployer sets;
    Cloud Run fills others with defaults, which are not compared)."""
    return _fields(current) == _fields(wanted)


def _fields(job: run_v2.Job) -> tuple[Any, ...]:
    execution = job.template
    task = execution.template
    container = task.containers[0] if task.containers else run_v2.Container()
    env = tuple(run_v2.EnvVar.serialize(var) for var in container.env)
    return (
        dict(execution.labels),
        execution.task_count or 1,
        container.image,
        tuple(container.command),
        tuple(container.args),
        env,
        dict(container.resources.limits),
        task.max_retries,
        run_v2.TaskTemplate.pb(task).timeout.seconds,
        task.service_account,
        run_v2.VpcAccess.serialize(task.vpc_access),
        tuple(run_v2.Volume.serialize(volume) for volume in task.volumes),
        tuple(run_v2.VolumeMount.serialize(mount) for mount in container.volume_mounts),
        task.encryption_key,
    )
