"""Build once: the build stage reuses a successful build of the same commit and build
config, when its image is still in the registry, instead of building again.

    --rebuild            never looks; builds
    earlier build found  its image is checked in Artifact Registry: there -> reused
                         (the record keeps the build, its log and the deploy that
                         asked for it); gone -> built again, saying so
    none, or no answer   built as before (a lookup that fails never fails the deploy)
"""

from __future__ import annotations

from deployer.pipeline.ports import BuildRejected, Builds, EarlierBuild, Images
from deployer.pipeline.preflight import Plan
from deployer.pipeline.record import DeployRecord
from deployer.pipeline.stages import Deadline, Done, StageRunner

# At most this much of the build stage goes to looking for a build to reuse.
LOOKUP_TIMEOUT = 10.0


def reused(build: EarlierBuild, commit: str, held: str) -> str:
    """How the build stage says a build was reused, e.g. "reused build 1234abcd of commit
    abc1234 (image sha256:… still in Artifact Registry)"."""
    digest = build.image.partition("@")[2]
    short = f"{digest[:19]}…" if len(digest) > 19 else digest
    return f"reused build {build.build_id[:8]} of commit {commit[:7]} (image {short} {held})"


def dry_run_build_line(
    record: DeployRecord, plan: Plan, builds: Builds, images: Images, timeout: float
) -> str:
    """What the build stage would do, for a dry run's plan: promote, reuse or build."""
    if record.promoted_from:
        return (
            f"nothing would be built: the image is {record.promoted_from}'s, read back when "
            "the promotion starts"
        )
    if record.rebuild:
        return "--rebuild: a new build, whatever was built before"
    try:
        earlier = builds.earlier(
            plan.builder, plan.build, plan.commit, min(LOOKUP_TIMEOUT, timeout)
        )
    except BuildRejected as error:
        return f"could not look for an earlier build ({error}): it would build"
    if earlier is None:
        return f"no earlier build of {plan.commit[:7]} with this config: it would build"
    check = images.check(earlier.image, min(LOOKUP_TIMEOUT, timeout))
    if not check.exists:
        return f"build {earlier.build_id[:8]} made its image, {check.detail}: it would build again"
    return f"would reuse build {earlier.build_id[:8]} of {plan.commit[:7]} (image {check.detail})"


def reuse_earlier_build(
    runner: StageRunner, plan: Plan, builds: Builds, images: Images, deadline: Deadline
) -> Done | None:
    """Reuse an earlier build for `runner.record` when one fits and its image exists: the
    stage's result (the record already holds the build and image), else None."""
    record = runner.record
    assert record.commit is not None
    if record.rebuild:
        runner.progress("--rebuild: building anew, not reusing an earlier build")
        return None
    wait = min(LOOKUP_TIMEOUT, deadline.left())
    try:
        earlier = builds.earlier(plan.builder, plan.build, record.commit, wait)
    except BuildRejected as error:
        runner.progress(f"could not look for an earlier build ({error}); building")
        return None
    if earlier is None:
        return None
    check = images.check(earlier.image, min(LOOKUP_TIMEOUT, deadline.left()))
    if not check.exists:
        runner.progress(
            f"build {earlier.build_id[:8]} of commit {record.commit[:7]} made "
            f"{earlier.image.partition('@')[2] or earlier.image}, {check.detail}: building again",
            earlier.log_url,
        )
        return None
    record.build_id, record.build_log_url = earlier.build_id, earlier.log_url
    record.image, record.build_reused = earlier.image, True
    record.reused_from = earlier.deploy_id or None
    runner.save()
    return Done(reused(earlier, record.commit, check.detail), link=earlier.log_url)
