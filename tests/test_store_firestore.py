"""The Firestore store on the Firestore emulator: the store contract, its URLs, its refusals,
and a deploy through the engine with `DEPLOYER_STORE` pointing at it.

The emulator is started once per session (`gcloud emulators firestore start`);
each test works under a prefix of its own. Without gcloud or Java the tests are
skipped, except under `CI=true`, where that is a failure.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import firestore

from deployer.cli import main
from deployer.config import load_config
from deployer.engine import Engine
from deployer.errors import RefusedError
from deployer.pipeline.record import Lock, State
from deployer.store import open_store
from deployer.store.firestore import (
    DEPLOYS,
    HISTORY_INDEX,
    LOCKS,
    OUTBOX,
    ROOT_COLLECTION,
    FirestoreLocation,
    FirestoreStore,
    parse_firestore_url,
)
from tests.engine_world import ENVIRONMENT, close_world, make_world
from tests.firestore_emulator import free_port
from tests.store_contract import (
    OLD_LOCKS_WRITTEN,
    StoreContract,
    assert_old_locks_are_held_and_taken_over,
    make_record,
)

PROJECT = "deployer-tests"


@pytest.fixture
def firestore_url(firestore_emulator: str) -> str:
    """A store of this test's own on the emulator (the environment is restored after)."""
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emulator
    return f"firestore://{PROJECT}/t-{uuid.uuid4().hex[:12]}"


class TestFirestoreStore(StoreContract):
    """The shared store contract (tests/store_contract.py) on the Firestore emulator."""

    @pytest.fixture
    def store_url(self, firestore_url: str) -> str:
        return firestore_url


# --- URLs and where the documents go --------------------------------------------------


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("firestore", FirestoreLocation()),
        ("firestore://my-project", FirestoreLocation("my-project")),
        ("firestore://my-project/", FirestoreLocation("my-project")),
        ("firestore://my-project/team-a", FirestoreLocation("my-project", None, "team-a")),
        ("firestore:///team_b", FirestoreLocation(None, None, "team_b")),
        ("firestore://p-1/x?database=deploys-db", FirestoreLocation("p-1", "deploys-db", "x")),
    ],
)
def test_store_urls_name_project_prefix_and_database(url: str, location: FirestoreLocation) -> None:
    assert parse_firestore_url(url) == location


@pytest.mark.parametrize(
    "url",
    [
        "firestore://my-project/a/b",
        "firestore://My_Project/x",
        "firestore://p/x?collection=y",
        "firestore://p/x?database=",
        "firestore://p/x#frag",
        "firestores://p",
    ],
)
def test_malformed_store_urls_are_refused(url: str) -> None:
    with pytest.raises(RefusedError, match="nothing is deployed"):
        open_store(url)


def test_prefixes_keep_deployers_apart(firestore_url: str) -> None:
    mine, theirs = open_store(firestore_url), open_store(firestore_url + "-other")
    record = make_record()
    mine.save(record)
    mine.acquire_lock(make_lock("d-mine"))
    assert theirs.get(record.id) is None and theirs.history("prod") == []
    assert theirs.acquire_lock(make_lock("d-theirs")).holder == "d-theirs"
    assert [lock.holder for lock in mine.locks("prod")] == ["d-mine"]


def test_plain_firestore_takes_the_project_from_the_environment(firestore_emulator: str) -> None:
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emulator
    os.environ["GOOGLE_CLOUD_PROJECT"] = f"env-{uuid.uuid4().hex[:8]}"
    store = open_store("firestore")
    assert isinstance(store, FirestoreStore)
    assert f"projects/{os.environ['GOOGLE_CLOUD_PROJECT']}/" in store.where
    record = make_record()
    store.save(record)
    assert open_store(f"firestore://{os.environ['GOOGLE_CLOUD_PROJECT']}").get(record.id) == record


def test_the_shipped_index_is_the_one_history_queries(repo_root: Path) -> None:
    shipped = json.loads((repo_root / "infra" / "firestore.indexes.json").read_text())
    [index] = shipped["indexes"]
    assert index["queryScope"] == "COLLECTION"
    assert (
        tuple(
            (index["collectionGroup"], field["fieldPath"], field["order"])
            for field in index["fields"]
        )
        == HISTORY_INDEX
    )
    # The other queries (unfinished, outbox_due) need no composite index; the JSON bodies
    # are never queried, so they are kept out of the indexes.
    exempt = {
        (override["collectionGroup"], override["fieldPath"])
        for override in shipped["fieldOverrides"]
        if override["indexes"] == []
    }
    assert exempt == {(DEPLOYS, "body"), (OUTBOX, "body")}


def test_locks_written_before_leases_read_back_without_owner_or_lease(firestore_url: str) -> None:
    # Written with the raw client where the module docstring says locks live, as a
    # deployer released before leases wrote them.
    location = parse_firestore_url(firestore_url)
    client = firestore.Client(project=location.project)
    try:
        locks = client.collection(ROOT_COLLECTION).document(location.prefix).collection(LOCKS)
        for kind, holder, reason, created_at in OLD_LOCKS_WRITTEN:
            fields = {"environment": "prod", "kind": kind, "holder": holder, "reason": reason}
            locks.document(f"prod:{kind}").create({**fields, "created_at": created_at})

        now = assert_old_locks_are_held_and_taken_over(open_store(firestore_url))
        assert locks.document("prod:deploy").get().to_dict() == {
            "environment": "prod",
            "kind": "deploy",
            "holder": "d-old",
            "reason": "deploy",
            "created_at": now,
            "owner": "w1",
            "lease_until": now + 120,
        }
    finally:
        client.close()


# --- refusals -------------------------------------------------------------------------


def test_no_project_or_credentials_is_refused(tmp_path: Path) -> None:
    for name in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        os.environ.pop(name, None)
    os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "no-such-key.json")
    with pytest.raises(RefusedError, match="nothing is deployed"):
        open_store("firestore")


def test_an_unreachable_firestore_is_refused_within_the_timeout() -> None:
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{free_port()}"  # nobody listens
    store = FirestoreStore.from_url(f"firestore://{PROJECT}/down", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(
        RefusedError, match=r"failed to read the locks of prod.*nothing is deployed"
    ):
        store.locks("prod")
    assert time.monotonic() - started < 10


def test_a_deploy_without_its_lock_store_changes_nothing(
    gcp: Sandbox, tmp_path: Path, repo_root: Path
) -> None:
    world = make_world(gcp, tmp_path / "world", repo_root, deploy_first=False)
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{free_port()}"  # nobody listens
        store = FirestoreStore.from_url(f"firestore://{PROJECT}/down", timeout=1.0)
        engine = Engine(load_config(world.config_path), world.platform, store)
        with pytest.raises(RefusedError, match="nothing is deployed"):
            world.deploy(engine=engine)
        assert world.build_ids() == []
        with pytest.raises(exceptions.NotFound):  # the service was never created
            world.service()
    finally:
        close_world(world)


# --- end to end -----------------------------------------------------------------------


def test_a_deploy_through_the_engine_is_read_back_by_status_and_history(
    gcp: Sandbox,
    firestore_url: str,
    tmp_path: Path,
    repo_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = make_world(gcp, tmp_path / "world", repo_root, deploy_first=False)
    try:
        os.environ["DEPLOYER_STORE"] = firestore_url
        engine = Engine(load_config(world.config_path), world.platform, open_store())
        record, _ = world.deploy(engine=engine)
        assert record.state == State.SUCCEEDED, record.error

        store = open_store(firestore_url)
        assert store.get(record.id) == record
        assert store.locks(ENVIRONMENT) == []  # the deploy lock went with the deploy

        # The command line, as another process would: everything from the environment.
        os.environ["DEPLOYER_CONFIG"] = str(world.config_path)
        os.environ["DEPLOYER_GCP_EMULATOR_HOST"] = gcp.grpc_address
        capsys.readouterr()
        assert main(["history", ENVIRONMENT]) == 0
        history = capsys.readouterr().out
        assert record.id in history
        assert main(["status", ENVIRONMENT]) == 0
        status = capsys.readouterr().out
        assert f"last deploy: {record.id} by cli:tester" in status
        assert record.candidate_revision is not None and record.candidate_revision in status
        world.assert_no_secrets(history, status, record.to_json())
    finally:
        close_world(world)


def make_lock(holder: str) -> Lock:
    return Lock(ENVIRONMENT, "deploy", holder, "deploy", time.time())
