"""Approval click to resumed work: a parked promotion, the approver's Approve, inline dispatch.

    uv run python benchmarks/approval_resume.py [--runs N] [--warmup N] [--poll-ms MS]
                                                [--front in_process|served|both]
                                                [--health default|fast]

prod promotes from staging and waits for one approval from APPROVER. Each round, the
requester sends `/deploy promote staging prod` to the front (signed as Slack signs it,
`DEPLOYER_DISPATCH=inline`); the promotion runs to its candidate's health and parks
(awaiting_approval). Once its thread shows the Approve button, the approver's signed
click on that button, as drawn, is sent, and the clock starts when it leaves:

    ack_s               the front's HTTP answer to the click
    resumed_state_s     the record seen out of awaiting_approval (its run counted),
                        polled from the store every MS milliseconds (so up to MS late)
    first_stage_s       the resumed run's first stage started (its `started_at`)
    traffic_moving_s    the promote stage started: traffic begins to move (target <= 1 s)
    traffic_moved_s     the promote stage ended: the candidate serves 100 %
    finished_s          the deploy ended (verified), as its record was last saved

Then where the time to traffic went: the resumed run's stages (each finds its work
done; the candidate, which passed its full health check before the wait, is asked for
one good answer again) and the gaps between them. `--health default` (the default): the
deployer's default check, 3 good answers 0.5 s apart before the park; `fast`: the
tests' 2, 0.1 s apart.

Two fronts, each over a world of its own in the same sandbox (`--front` picks one):
`in_process`, `functions_framework.create_app("deployer_http", "main.py")` in this
process, as tests/front_world.py `in_process` (its ack is the WSGI call's return; the
dispatched run is a thread of this process, beside the sandbox); and `served`,
`deployer serve` in a process of its own, over loopback HTTP (one kept-alive client).
Prints a table and saves everything to benchmarks/results/approval_resume.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from deployer_sandbox.harness.sandbox import Sandbox
from figures import save, summary
from promotion_world import (
    ENVIRONMENT,
    HEALTH_CHECKS,
    ROOT,
    Answer,
    FrontWorld,
    WireRequest,
    block_action,
    close_world,
    in_process,
    make_front,
    make_world,
    promote_from_staging,
    quiet_logs,
    served,
    start_sandbox,
    thread_sent,
    unique,
    use_health,
)

from deployer.pipeline.record import DeployRecord, State

TARGET_S = 1.0
FRONTS = ("in_process", "served")
MOMENTS = ("ack", "resumed_state", "first_stage", "traffic_moving", "traffic_moved")
APPROVE = "Approve"
RESUMED = ("preflight", "build", "deploy", "ready", "health", "approval")


class Poller:
    """Reads the record every `interval` s on a thread; when it was first seen out of
    awaiting_approval."""

    def __init__(self, front: FrontWorld, deploy_id: str, interval: float) -> None:
        self._store = front.world.store()
        self._deploy_id, self._interval = deploy_id, interval
        self._stop = threading.Event()
        self.left_parking: float | None = None
        self._thread = threading.Thread(target=self._poll, name="poller", daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            record = self._store.get(self._deploy_id)
            if record is not None and record.state != State.AWAITING_APPROVAL:
                self.left_parking = time.time()
                return
            self._stop.wait(self._interval)

    @contextmanager
    def running(self) -> Iterator[Poller]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def approve_button(front: FrontWorld, deploy_id: str) -> tuple[str, str, str]:
    """(action_id, value, message ts) of the Approve button, as the parent shows it."""
    ts = front.posted(deploy_id)
    parent = next(m for m in front.messages() if m.get("ts") == ts)
    for block in parent.get("blocks", []):
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element["text"]["text"] == APPROVE:
                return element["action_id"], element.get("value", ""), ts
    raise SystemExit(f"the parent of {deploy_id} shows no {APPROVE} button")


def keep_alive(client: httpx.Client, base_url: str) -> Callable[[WireRequest], Answer]:
    """Requests to `deployer serve` over one kept-alive client: a new httpx client for
    each (as `send_http` makes) costs tens of milliseconds of its own (its SSL context),
    which Slack's side would not add to the ack."""

    def send(request: WireRequest) -> Answer:
        response = client.request(
            request.method, base_url + request.path, content=request.body, headers=request.headers
        )
        return Answer(response.status_code, response.text, dict(response.headers.items()))

    return send


def park(front: FrontWorld) -> DeployRecord:
    """`/deploy promote staging prod`, to the moment it waits with its thread all sent."""
    before = {record.id for record in front.records()}
    answer = front.command("promote staging prod")
    if answer.status != 200 or "Started deploy" not in answer.text:
        raise SystemExit(f"/deploy promote answered {answer.status}: {answer.text}")
    (new,) = [record for record in front.records() if record.id not in before]
    store = front.world.store()
    parked = front.wait(
        lambda r: r.state not in (State.PENDING, State.RUNNING) and thread_sent(store, r.id),
        new.id,
        timeout=120,
    )
    if parked.state != State.AWAITING_APPROVAL:
        raise SystemExit(f"{parked.id} ended {parked.state} instead of parking: {parked.error}")
    front.settle(quiet=0.3)
    return parked


def approve(front: FrontWorld, approver: str, parked: DeployRecord, poll: float) -> dict[str, Any]:
    """The approver's click, then the deploy to its end; the moments, from the click."""
    action_id, value, ts = approve_button(front, parked.id)
    url = front.sandbox.http.mint_response_url(channel=front.channel, user=approver, message_ts=ts)
    click = block_action(
        front.signing_secret,
        action_id,
        value,
        user=approver,
        channel=front.channel,
        message_ts=ts,
        response_url=url,
    )
    with Poller(front, parked.id, poll).running() as poller:
        sent = time.time()
        answer = front.send(click)
        acked = time.time()
        done = front.finished(parked.id, timeout=120)
    if answer.status != 200:
        raise SystemExit(f"the Approve click was answered {answer.status}: {answer.text}")
    if done.state != State.SUCCEEDED:
        raise SystemExit(f"{done.id} ended {done.state}: {done.error}")
    resumed = [stage for stage in done.stages if stage.started_at >= sent]
    started = {str(stage.stage): stage for stage in resumed}
    promote = started["promote"]
    stages = {name: started[name].duration for name in RESUMED if name in started}
    # The rest of the time to traffic: the click's handling, the hand-over to the run,
    # the run taking the lock over, and the saves and events between stages.
    stages["outside_stages"] = promote.started_at - sent - sum(stages.values())
    return {
        "ack": acked - sent,
        "resumed_state": (poller.left_parking or float("nan")) - sent,
        "first_stage": resumed[0].started_at - sent,
        "traffic_moving": promote.started_at - sent,
        "traffic_moved": promote.started_at + promote.duration - sent,
        "finished": done.updated_at - sent,
        "stages": stages,
    }


def figures_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The summaries."""
    results: dict[str, Any] = {
        f"{key}_s": summary([sample[key] for sample in samples]) for key in (*MOMENTS, "finished")
    }
    results["click_to_promote_parts_median_s"] = {
        part: round(statistics.median(sample["stages"][part] for sample in samples), 4)
        for part in samples[0]["stages"]
    }
    results["met"] = results["traffic_moving_s"]["median"] <= TARGET_S
    # Each click's own figures, to find where a slow one lost its time.
    results["clicks"] = [
        {
            **{key: round(sample[key], 4) for key in (*MOMENTS, "finished")},
            "stages": {part: round(seconds, 4) for part, seconds in sample["stages"].items()},
        }
        for sample in samples
    ]
    return results


def measure_front(sandbox: Sandbox, workdir: Path, front_kind: str, args: Any) -> dict[str, Any]:
    """A world of its own and its front; the figures of `args.runs` clicks."""
    world = make_world(sandbox, workdir / front_kind / "world", ROOT)
    try:
        front = make_front(world, sandbox)
        approver = unique("U")
        sandbox.http.sink.add_user(approver, "approver")
        # The requester may not approve their own deploy: one approval, the approver's.
        use_health(world, args.health)
        promote_from_staging(world, {"required": 1, "approvers": [approver], "timeout": 600})
        connect = in_process if front_kind == "in_process" else served
        samples = []
        with connect(front, ROOT) as ready, httpx.Client(timeout=30) as client:
            quiet_logs(workdir)
            if front_kind == "served":
                ready.send = keep_alive(client, ready.env["_SERVE_URL"])
            for number in range(args.warmup + args.runs):
                sample = approve(ready, approver, park(ready), args.poll_ms / 1000)
                warm = number < args.warmup
                if not warm:
                    samples.append(sample)
                print(
                    f"{front_kind} click {number + 1}/{args.warmup + args.runs}"
                    f"{' (warm-up)' if warm else ''}: ack {sample['ack']:.3f} s, promote "
                    f"started {sample['traffic_moving']:.3f} s",
                    flush=True,
                )
        check = world.config.target(ENVIRONMENT).health
        return {
            "health_check": check.model_dump(mode="json"),
            **figures_of(samples),
        }
    finally:
        close_world(world)


def table(results: dict[str, Any]) -> None:
    print(f"\nApprove click -> ..., seconds over {results['runs']} clicks (inline dispatch)")
    fronts = [kind for kind in FRONTS if kind in results]
    print(f"   {'':<22}" + "".join(f"{kind + ' median':>20}{'p95':>7}" for kind in fronts))
    for key, label in (
        ("ack_s", "front's ack"),
        ("resumed_state_s", "out of awaiting"),
        ("first_stage_s", "first stage started"),
        ("traffic_moving_s", "promote started"),
        ("traffic_moved_s", "promote ended"),
        ("finished_s", "deploy ended"),
    ):
        cells = "".join(
            f"{results[kind][key]['median']:>20.3f}{results[kind][key]['p95']:>7.3f}"
            for kind in fronts
        )
        print(f"   {label:<22}{cells}")
    for kind in fronts:
        parts = results[kind]["click_to_promote_parts_median_s"]
        print(
            f"   {kind}, to promote, median s: "
            + ", ".join(f"{name} {seconds:.3f}" for name, seconds in parts.items())
        )
    verdicts = ", ".join(f"{kind} {'met' if results[kind]['met'] else 'MISSED'}" for kind in fronts)
    print(f"   target: promote started <= {TARGET_S:g} s (median): {verdicts}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="measured clicks a front (7)")
    parser.add_argument("--warmup", type=int, default=1, help="clicks first, not counted (1)")
    parser.add_argument("--front", choices=(*FRONTS, "both"), default="both")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="store polling interval (5)")
    parser.add_argument(
        "--health",
        choices=tuple(HEALTH_CHECKS),
        default="default",
        help="the candidate's health check: the deployer's default (3 good answers 0.5 s "
        "apart) or the tests' world's (2, 0.1 s apart)",
    )
    args = parser.parse_args()

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_1m_start": round(os.getloadavg()[0], 2),
        },
        "runs": args.runs,
        "poll_ms": args.poll_ms,
        "health": args.health,
        "target_s": TARGET_S,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        quiet_logs(workdir)
        sandbox = start_sandbox(workdir)
        try:
            for kind in FRONTS if args.front == "both" else (args.front,):
                results[kind] = measure_front(sandbox, workdir, kind, args)
        finally:
            sandbox.stop()
    results["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    table(results)
    save("approval_resume", results)


if __name__ == "__main__":
    main()
