"""What changes, as pure functions over two revisions, its Slack section, and the commit
log read with real git from a repository on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.adapters import git_log, git_remote
from deployer.front.change_messages import changes_text
from deployer.pipeline.changes import Changes, compare, first_deploy, lines
from deployer.pipeline.ports import CommitLog, PinnedSecret, RevisionSpec, SourceProblem
from deployer.pipeline.record import DeployRecord
from tests.git_repos import commit, new_repository

OLD, NEW = "a" * 40, "b" * 40


def spec(**changes: object) -> RevisionSpec:
    base: dict[str, object] = {
        "name": "backend-old",
        "image": "europe-docker.pkg.dev/p/r/backend@sha256:" + "1" * 64,
        "commit": OLD,
        "env": {"LOG_LEVEL": "f-info", "REGION": "f-eu"},
        "secret_env": {
            "MONGODB_URL": PinnedSecret("mongodb-url", "3"),
            "SECRET_KEY": PinnedSecret("secret-key", "1"),
        },
        "service_account": "run@p.iam.gserviceaccount.com",
        "cpu": "1",
        "memory": "512Mi",
        "min_instances": 0,
        "max_instances": 10,
    }
    return RevisionSpec(**{**base, **changes})  # type: ignore[arg-type]


def test_env_names_secret_versions_and_settings_that_change() -> None:
    serving = spec()
    candidate = spec(
        name="backend-new",
        image="europe-docker.pkg.dev/p/r/backend@sha256:" + "2" * 64,
        commit=NEW,
        env={"REGION": "f-us", "FEATURE": "f-on"},
        secret_env={
            "MONGODB_URL": PinnedSecret("mongodb-url", "4"),
            "SECRET_KEY": PinnedSecret("other-key", "1"),
            "API_TOKEN": PinnedSecret("api-token", "2"),
        },
        memory="1Gi",
        max_instances=20,
    )
    log = CommitLog(2, ("second", "first"), compare_url="https://github.com/o/r/compare/x...y")

    found = compare(serving, candidate, NEW, log)

    assert (found.env_added, found.env_removed, found.env_changed) == (
        ["FEATURE"],
        ["LOG_LEVEL"],
        ["REGION"],
    )
    assert found.secret_env_added == ["API_TOKEN"] and found.secret_env_removed == []
    assert found.secret_env_changed == ["SECRET_KEY"]  # now read from another secret
    assert found.secret_versions == {"mongodb-url": ["3", "4"]}
    assert found.settings == {"memory": ["512Mi", "1Gi"], "max instances": ["10", "20"]}
    assert found.image_from.endswith("1" * 64) and found.image_to.endswith("2" * 64)
    assert (found.commits, found.subjects, found.serving_commit) == (2, ["second", "first"], OLD)
    text = "\n".join(lines(found))
    assert "2 commits since aaaaaaaaaaaa" in text
    assert "secret mongodb-url: version 3 -> 4" in text
    # Fingerprints are compared, never shown.
    assert "f-" not in text and "f-" not in changes_text(found)


def test_the_same_revision_says_so_and_a_record_keeps_it() -> None:
    found = compare(spec(), spec(name="backend-new"), OLD, CommitLog(0, ()))
    assert found.nothing_else and found.commits == 0
    assert lines(found)[-1] == "same image, env, secrets and settings"

    record = DeployRecord("d-1", "deploy", "prod", "backend", "cli:me", changes=found)
    assert DeployRecord.from_json(record.to_json()).changes == found


def test_an_unknown_serving_commit_or_log_is_said_not_guessed() -> None:
    foreign = compare(spec(commit=""), spec(name="backend-new"), NEW, None)
    assert foreign.commits is None
    assert "backend-old was not deployed by the deployer" in lines(foreign)[0]

    unread = compare(
        spec(), spec(name="backend-new"), NEW, None, "the commit log could not be read: x"
    )
    assert lines(unread)[0].endswith("not known (the commit log could not be read: x)")

    first = first_deploy(NEW)
    assert first.first and lines(first) == ["what changes: nothing served before this deploy"]
    assert changes_text(first) == "*What changes:* nothing served before this deploy"


def test_the_slack_section_escapes_subjects_and_keeps_to_its_size() -> None:
    subjects = ("<!channel> fix & ship", "x" * 200)
    found = compare(spec(), spec(name="backend-new"), NEW, CommitLog(40, subjects))
    text = changes_text(found)
    assert "<!channel>" not in text and "&lt;!channel&gt; fix &amp; ship" in text
    assert "x" * 71 + "…" in text and "x" * 72 not in text
    assert "• …and 38 more" in text
    many = Changes(commit=NEW, serving_revision="r", env_added=[f"V{i}" for i in range(40)])
    assert changes_text(many).endswith("`V14` and 25 more")


@pytest.mark.parametrize(
    ("url", "compare_url"),
    [
        ("https://github.com/acme/backend.git", "https://github.com/acme/backend/compare/o...n"),
        ("https://github.com/acme/backend", "https://github.com/acme/backend/compare/o...n"),
        ("git@github.com:acme/backend.git", "https://github.com/acme/backend/compare/o...n"),
        ("https://gitlab.com/acme/backend.git", ""),
        ("https://github.com.evil.example/acme/backend", ""),
        ("/srv/repos/backend", ""),
    ],
)
def test_a_compare_link_only_for_github(url: str, compare_url: str) -> None:
    assert git_log.github_compare_url(url, "o", "n") == compare_url


def test_the_commit_log_between_two_commits_of_a_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    old = new_repository(repo, {"a.txt": "a"})
    commit(repo, {"b.txt": "b"}, "add b")
    new = commit(repo, {"c.txt": "c"}, "add c\n\nthe body is not a subject")
    remote = git_remote.Remote(url=str(repo), name="repo")

    log = git_log.commit_log(remote, old, new, 5, 10)
    assert (log.count, log.subjects, log.behind, log.complete) == (2, ("add c", "add b"), 0, True)

    back = git_log.commit_log(remote, new, old, 1, 10)  # deploying an older commit
    assert (back.count, back.behind, back.subjects) == (0, 2, ())

    with pytest.raises(SourceProblem):
        git_log.commit_log(remote, "c" * 40, new, 5, 10)  # a commit the repository lacks
