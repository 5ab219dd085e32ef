"""Steps that run on the worker of their site: Prefect task workers, one per site.

With a runbook ``placement``, the flow hands a step whose data lives at a site (see
cutover.plan.placement) to that site's step worker instead of its own thread pool:
``submit`` creates the task run deferred (``Task.apply_async``) under the task key
``cutover-step-at-<site>``, in the cutover flow run, named by its step id; the step worker
of that site (``serve``, what ``cutover step-worker --site NAME`` runs) is subscribed to
that key only, and runs the very task function the flow would have run
(tasks/steps.py::run), with its site's environment: its secrets resolve there and nowhere
else. Results are persisted in the result storage the flow run names (it travels with the
task run), which every worker must reach.

What a worker cannot get from the flow side, it computes from the step: the cache key (the
same as the flow's, ``step_cache_key``), the number of retries and their delay (the
runbook's ``defaults``, decided in ``_retry_here``).

A step worker that dies leaves its task runs Running on the server, and nothing on the
server would ever end them. So each step records which worker runs it (a variable
``cutover-runner-<task run id>``, removed when it ends), and the flow run watches its site
steps (``Watchdog``): a run whose worker is no longer subscribed is scheduled again, under
the same task run id (its parameters are still stored), so what waits for it still does;
the next worker of that site picks it up, and the step, idempotent, looks at the world
before it acts again.
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import os
import signal
import socket
import threading
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog
from prefect import Task, flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.filters import (
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
    TaskRunFilterTags,
)
from prefect.client.schemas.objects import State, StateDetails, StateType
from prefect.context import FlowRunContext, SyncClientContext, TaskRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.futures import PrefectDistributedFuture, PrefectFuture
from prefect.states import Scheduled
from prefect.task_worker import StopTaskWorker, TaskWorker
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from cutover.errors import PermanentStepError, worth_retrying
from cutover.orchestration.step_worker import TASK_KEY_PREFIX
from cutover.plan.build import Step
from cutover.plan.inputs import step_inputs
from cutover.plan.phases import PHASES
from cutover.runbook.model import Runbook
from tasks import steps
from tasks.common import once, runbook_at

log = structlog.get_logger()

RUNNER_PREFIX = "cutover-runner-"
RUN_TAG = "run:"  # a site step's tag naming its flow run (Prefect's Pending report of a received step drops the run)
RESCHEDULED = "rescheduled"  # how the message of a step's state given to another worker begins
MAX_RETRIES = 20  # the runbook's bound (Defaults.retries); the runbook's own count is decided per run
WATCH_EVERY_S = 5.0
# How long a run's worker may be missing from the server's list before the run is given to
# another: the server notices a closed websocket within a second or two.
GRACE_S = 10.0
NO_RECORD_GRACE_S = 60.0
RESUBSCRIBE_AFTER_S = 1.0


def _still_running(client: Any, task_run_id: UUID) -> bool:
    state = client.read_task_run(task_run_id).state
    return state is not None and state.type in (StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING)


def task_key(site: str) -> str:
    return f"{TASK_KEY_PREFIX}{site}"


def step_cache_key(runbook: Runbook, step: Step, attempt_key: str) -> str:
    """The key a step's result is cached under (the flow's own steps use the same)."""
    return f"{runbook.cutover}:{attempt_key}:{step.id}:{step_inputs(runbook, step)}"


def _cache_key(context: Any, parameters: dict[str, Any]) -> str:
    step: Step = parameters["step"]
    key = step_cache_key(runbook_at(parameters["runbook_path"]), step, parameters["attempt_key"])
    if PHASES[step.phase].always_rerun:
        return str(once(key)(context, parameters))
    return key


def _retry_here(task: Any, task_run: Any, state: Any) -> bool:
    """Retry as the runbook says: only what waiting may fix, at most ``defaults.retries``
    times, after ``retry_delay_s`` doubling (waited here: the served task is one for every
    runbook, so Prefect's own delay cannot be the runbook's)."""
    try:
        state.result()
    except BaseException as exc:
        if not worth_retrying(exc):
            return False
    context = TaskRunContext.get()
    parameters = context.parameters if context is not None and context.parameters else {}
    step: Step | None = parameters.get("step")
    if step is None or not PHASES[step.phase].retried:
        return False
    defaults = runbook_at(parameters["runbook_path"]).defaults
    done = int(task_run.run_count or 1)  # runs so far, this one included
    if done > defaults.retries:
        return False
    time.sleep(defaults.retry_delay_s * 2 ** (done - 1))
    return True


class _SiteTask(Task[..., Any]):
    """A step task of one site. Routing is by task key, which Prefect derives from the
    function (the same for every site): this one is set, and kept by ``with_options``
    (Prefect's task worker serves a copy made with it)."""

    def with_options(self, *args: Any, **options: Any) -> Task[..., Any]:
        copy = super().with_options(*args, **options)
        copy.task_key = self.task_key
        return copy


@functools.lru_cache(maxsize=64)
def site_task(site: str) -> Task[..., Any]:
    """The step task as a site's worker serves it and as the flow submits it to that site."""
    served: Task[..., Any] = _SiteTask(
        fn=_run_here,
        name=f"step-at-{site}",
        task_run_name="{step.id}",
        cache_key_fn=_cache_key,
        persist_result=True,
        retries=MAX_RETRIES,
        retry_delay_seconds=0,
        retry_condition_fn=_retry_here,
    )
    served.task_key = task_key(site)
    return served


def _portable(future: Any) -> Any:
    """A future the step worker can wait for: a local step's future becomes a distributed
    one on the same task run (its result is persisted, so it can be read from anywhere)."""
    if isinstance(future, PrefectFuture) and not isinstance(future, PrefectDistributedFuture):
        return PrefectDistributedFuture(task_run_id=future.task_run_id)
    return future


@flow(name="cutover-site-step", persist_result=True)
def _stand_in() -> None:
    """Not run: the flow a handed-out step's context names. Prefect stores the context of
    the flow run with each step it hands out (to restore it on the worker), flow object
    included; the cutover flow, pickled by value, holds locks and cannot be. This one can,
    and the worker needs nothing else of it (the flow run's id, parameters and settings
    travel as they are)."""


def _context_for_hand_out() -> Any:
    """The current flow run's context with the stand-in as its flow (a copy: the run's own
    stays as it is; the counters of task run names are shared)."""
    current = FlowRunContext.get()
    if current is None:
        return nullcontext()
    return current.model_copy(update={"flow": _stand_in})


def submit(
    site: str,
    *,
    runbook_path: str,
    step: Step,
    attempt_key: str,
    flow_run_id: str,
    run_key: str,
    upstream: dict[str, Any],
    wait_for: list[Any],
    rolled_back: dict[str, str],
    tags: list[str],
) -> PrefectDistributedFuture[Any]:
    """Hand ``step`` to the step worker of ``site``; its future. The task run belongs to the
    current flow run and carries ``tags`` (its attempt) and the site and run tags the watch finds it by."""
    task = site_task(site).with_options(name=step.id, tags=[*tags, f"site:{site}", f"{RUN_TAG}{flow_run_id}"])
    with _context_for_hand_out():
        future = task.apply_async(
            kwargs={
                "runbook_path": runbook_path,
                "step": step,
                "attempt_key": attempt_key,
                "flow_run_id": flow_run_id,
                "run_key": run_key,
                "upstream": {sid: _portable(f) for sid, f in upstream.items()},
                "rolled_back": rolled_back,
            },
            wait_for=[_portable(f) for f in wait_for],
        )
    WATCHDOG.watch(future.task_run_id, site)
    return future


# --- on the step worker ---------------------------------------------------------------


def runner_id() -> str:
    """The identifier the server lists this process's task worker by."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def _record_runner(client: PrefectClient, task_run_id: UUID) -> None:
    name = f"{RUNNER_PREFIX}{task_run_id}"
    try:
        await client.create_variable(VariableCreate(name=name, value=runner_id()))
    except ObjectAlreadyExists:  # a rescheduled run: its old runner is gone
        await client.update_variable(VariableUpdate(name=name, value=runner_id()))


async def _forget_runner(client: PrefectClient, task_run_id: UUID) -> None:
    try:
        await client.delete_variable_by_name(f"{RUNNER_PREFIX}{task_run_id}")
    except ObjectNotFound:
        pass


def _refuse_after_the_flow_run(flow_run_id: str, step: Step) -> None:
    """A step handed out by a flow run that has ended since (cancelled, crashed, failed)
    does not start: whatever ended the run, it is not the step's to go on with."""
    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        return  # not from a flow run of the API (a local test)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    if state is not None and (state.is_final() or state.type == StateType.CANCELLING):
        raise PermanentStepError(f"{step.id}: not started: its flow run {flow_run_id} is {state.name or state.type.value}")


def _run_here(
    runbook_path: str,
    step: Step,
    attempt_key: str,
    flow_run_id: str,
    run_key: str,
    upstream: dict[str, Any],
    rolled_back: dict[str, str] | None = None,
) -> Any:
    _refuse_after_the_flow_run(flow_run_id, step)
    return steps.run.fn(runbook_path, step, attempt_key, flow_run_id, run_key, upstream, rolled_back)


class _StepWorker(TaskWorker):
    """Prefect's task worker, recording the runner of every step from the moment it
    receives it (a step may wait for its upstream steps, Pending, before it runs) until the
    engine is done with it.

    Its limit bounds the steps that run at once (the thread pool Prefect runs them in), not
    the steps it takes. Prefect's own worker stops reading its subscription while every
    slot is taken; the server, waiting for that worker to acknowledge the next step, drops
    it from its list of task workers meanwhile, and the watch in the flow run would take a
    busy worker for a dead one and give its steps to another. This one acknowledges every
    step at once; the steps over the limit wait here for a thread, recorded as its own."""

    def __init__(self, served: Task[..., Any], limit: int) -> None:
        super().__init__(served, limit=limit)
        self._held: set[UUID] = set()

    async def _acquire_token(self, task_run_id: UUID) -> bool:
        # right after the step arrives (the server counts it delivered), with the worker's
        # own client: a client made per call costs about 30 ms of CPU (its TLS context)
        await _record_runner(self._client, task_run_id)
        if task_run_id in self._held:
            return False  # sent again while it is still here: it runs once
        self._held.add(task_run_id)
        return True

    def _release_token(self, task_run_id: UUID) -> bool:
        self._held.discard(task_run_id)
        return True

    async def _subscribe_to_task_scheduling(self) -> None:
        # Prefect's subscription connects again after an error, but ends when the server
        # closes it normally (a server restarting says "going away"): a worker would then
        # sit idle, alive. This one subscribes again until it is stopped.
        while True:
            try:
                await super()._subscribe_to_task_scheduling()  # type: ignore[no-untyped-call]
            except (ConnectionClosed, InvalidHandshake, OSError) as exc:
                log.warning("step_worker_subscribing_again", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(RESUBSCRIBE_AFTER_S)

    async def _submit_scheduled_task_run(self, task_run: Any) -> None:
        try:
            await super()._submit_scheduled_task_run(task_run)
        finally:
            try:
                await _forget_runner(self._client, task_run.id)
            except Exception as exc:  # the step's result counts more than the bookkeeping
                log.warning("runner_record_left", task_run=str(task_run.id), error=str(exc))


async def _serve(served: Task[..., Any], limit: int) -> None:
    worker = _StepWorker(served, limit=limit)
    try:
        # One synchronous client for every step this worker runs, as a flow run shares one
        # among its task threads (the threads copy this context): without it Prefect's task
        # engine makes one per step, about 30 ms of CPU and a version check each.
        with SyncClientContext():
            await worker.astart()
    except (StopTaskWorker, asyncio.CancelledError, KeyboardInterrupt):
        log.info("step_worker_stopped")


def serve(site: str, limit: int = 16) -> None:
    """Run the step worker of ``site`` in this process until it is stopped: at most
    ``limit`` steps at once."""
    served = site_task(site)
    # `kill -USR1 <pid>` writes every thread's stack to the worker's log: what a worker
    # that stopped taking steps is waiting for
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    log.info("step_worker_serving", site=site, serves=served.task_key, limit=limit, runner=runner_id())
    # in Prefect's own event loop thread, as prefect.task_worker.serve does: the steps'
    # waits for their upstream steps (TaskRunWaiter) are served from that loop
    from prefect._internal.concurrency.api import create_call, from_sync

    from_sync.call_soon_in_loop_thread(create_call(_serve, served, limit)).result()


# --- in the flow run: the watch over site steps -----------------------------------------


class Watchdog:
    """Schedules again the site steps whose worker died (see the module docstring).

    It watches (flow run, site) pairs, not single steps: each round asks the server for the
    Running steps of that flow run tagged with that site (at most the site's workers' slots),
    whatever the number of steps handed out. It runs in a daemon thread of the flow-run
    process, so it ends with the flow run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: set[tuple[str, str]] = set()  # (flow run id, site)
        self._missing_since: dict[UUID, float] = {}
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self.rescheduled: list[UUID] = []

    def watch(self, task_run_id: UUID, site: str) -> None:
        context = TaskRunContext.get()
        flow_context = FlowRunContext.get()
        flow_run = flow_context.flow_run if flow_context is not None else None
        if flow_run is None or context is not None:
            return  # handed out outside a flow run: nothing to watch it from
        with self._lock:
            self._watched.add((str(flow_run.id), site))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="cutover-site-watchdog", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(WATCH_EVERY_S)
            try:
                self.look()
            except Exception as exc:  # the API may be briefly away; look again next time
                log.warning("site_watch_failed", error=str(exc))

    def _steps(self, client: Any, flow_run_id: str, site: str, states: list[StateType], limit: int = 200) -> list[Any]:
        # by tag, not by flow run: Prefect's task worker reports a step it received as Pending
        # without its flow run (the flow run comes back once the step runs)
        return list(
            client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    tags=TaskRunFilterTags(all_=[f"site:{site}", f"{RUN_TAG}{flow_run_id}"]),
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=states)),
                ),
                limit=limit,
            )
        )

    def look(self) -> None:
        """One round: give the Running steps of a vanished worker to another."""
        with self._lock:
            watched = sorted(self._watched, key=str)
        with get_client(sync_client=True) as client:
            keys = sorted({task_key(site) for _, site in watched})
            live = client.request("POST", "/task_workers/filter", json={"task_worker_filter": {"task_keys": keys}}).json()
            alive = {w["identifier"] for w in live}
            served = {key for w in live for key in w["task_keys"]}
            now = time.monotonic()
            running: set[UUID] = set()
            for flow_run_id, site in watched:
                waiting = task_key(site) not in served and site not in self._warned
                if waiting and self._steps(client, flow_run_id, site, [StateType.SCHEDULED], limit=1):
                    self._warned.add(site)
                    log.warning("step_worker_missing", site=site, hint=f"start one: cutover step-worker --site {site}")
                for run in self._steps(client, flow_run_id, site, [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]):
                    running.add(run.id)
                    record = client.read_variable_by_name(f"{RUNNER_PREFIX}{run.id}")
                    if record is not None and record.value in alive:
                        self._missing_since.pop(run.id, None)
                        continue
                    if record is None and run.state.type == StateType.SCHEDULED:
                        continue  # still in the server's queue: nobody has it yet
                    # no record: its worker died before writing it, or the step just ended
                    # and the server has not applied its last state yet: wait longer
                    grace = GRACE_S if record is not None else NO_RECORD_GRACE_S
                    first = self._missing_since.setdefault(run.id, now)
                    if now - first >= grace and _still_running(client, run.id):
                        self._reschedule(client, run, site, str(record.value) if record else "(unrecorded)")
            for gone in set(self._missing_since) - running:
                self._missing_since.pop(gone, None)

    def _reschedule(self, client: Any, run: Any, site: str, runner: str) -> None:
        """Schedule ``run`` again for the next worker of ``site``: the same task run id, the
        parameters it was handed out with (the server queues it for that site's key)."""
        parameters_id = next(
            (
                s.state_details.task_parameters_id
                for s in client.read_task_run_states(run.id)
                if s.state_details.task_parameters_id
            ),
            None,
        )
        # named AwaitingRetry, the server puts it in the queue it serves first
        state: State[Any] = Scheduled(scheduled_time=datetime.now(UTC), name="AwaitingRetry")
        state.state_details = StateDetails(deferred=True, task_parameters_id=parameters_id, task_run_id=run.id)
        state.message = f"{RESCHEDULED}: its step worker {runner} at {site} is gone; given to the next worker of {site}"
        client.set_task_run_state(run.id, state, force=True)
        try:  # queued again: nobody has it until a worker takes it
            client.delete_variable_by_name(f"{RUNNER_PREFIX}{run.id}")
        except ObjectNotFound:
            pass
        self._missing_since.pop(run.id, None)
        self.rescheduled.append(run.id)
        log.warning("site_step_rescheduled", step=run.name, site=site, lost_worker=runner)


WATCHDOG = Watchdog()
