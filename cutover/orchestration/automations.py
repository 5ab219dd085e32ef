"""Prefect automations that tell people what needs them, through a notification block.

``create_automations`` puts four automations on a Prefect server, each sending through one
notification block (Prefect's own blocks: a custom webhook made here from a URL, or any
block already saved, e.g. Slack, Microsoft Teams or email through apprise):

* **decision waiting**: a go/no-go gate, or a failure past the point of no return, paused
  a run and waits for a person (``cutover.gate.waiting``, ``cutover.decision.waiting``,
  ``cutover.gate.overdue``);
* **step failed for good**: a cutover or rollback task run ended Failed or Crashed, its
  retries spent (Prefect's ``prefect.task-run.Failed|Crashed``);
* **past the point of no return**: a step of a point-of-no-return phase completed (the
  DNS switch by default): from here on a failure pauses and asks instead of rolling back;
* **gone silent**: after a step started, retried or reported progress, no step event of
  that cutover at all for ``silent_minutes`` (a proactive trigger whose window every new
  start or progress event restarts; a completion closes it, so a finished run stays quiet).

They are named ``cutover: ...``; creating them again replaces them (safe on every ``cutover
up``). ``prefect.yaml`` cannot hold them: its triggers start deployments, they do not notify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import structlog

from cutover import event_names as ev
from cutover.orchestration import OrchestrationError
from cutover.orchestration.api import prefect_client

log = structlog.get_logger()

NAME_PREFIX = "cutover: "
WEBHOOK_BLOCK = "cutover-notifications"
FLOWS = [ev.CUTOVER_FLOW, "cutover-rollback"]


@dataclass(frozen=True)
class AutomationSpec:
    name: str
    description: str
    trigger: dict[str, Any]
    subject: str
    body: str


def automation_specs(
    silent_minutes: float = 15.0, point_of_no_return_phases: Sequence[str] = ("dns_switch",)
) -> list[AutomationSpec]:
    """The automations, as data (the trigger in Prefect's JSON shape)."""
    step = "{{ event.resource['prefect.resource.name'] }}"
    cutover = "{{ event.resource['cutover.name'] }}"
    return [
        AutomationSpec(
            NAME_PREFIX + "decision waiting",
            "A gate or a point-of-no-return question waits for a person.",
            {
                "type": "event",
                "posture": "Reactive",
                "threshold": 1,
                "within": 0,
                "match": {ev.LABEL_ID: "cutover.*"},
                "expect": [ev.GATE_WAITING, ev.DECISION_WAITING, ev.GATE_OVERDUE],
            },
            f"Cutover {cutover}: a decision is waiting",
            f"{{{{ event.event }}}} for {step} at {{{{ event.occurred }}}}. Answer it in the Prefect UI (the paused flow run).",
        ),
        AutomationSpec(
            NAME_PREFIX + "step failed for good",
            "A step of a cutover or rollback run failed after its retries.",
            {
                "type": "event",
                "posture": "Reactive",
                "threshold": 1,
                "within": 0,
                "match": {ev.LABEL_ID: "prefect.task-run.*"},
                "match_related": {ev.LABEL_ROLE: "flow", ev.LABEL_NAME: FLOWS},
                "expect": [ev.TASK_RUN_FAILED, ev.TASK_RUN_CRASHED],
            },
            f"Cutover step {step} failed for good",
            f"{step}: {{{{ event.resource['prefect.state-message'] }}}} ({{{{ event.occurred }}}})",
        ),
        AutomationSpec(
            NAME_PREFIX + "past the point of no return",
            "A step at the point of no return completed: failures from now on pause and ask.",
            {
                "type": "event",
                "posture": "Reactive",
                "threshold": 1,
                "within": 0,
                "match": {ev.LABEL_ID: "cutover.*", ev.LABEL_PHASE: list(point_of_no_return_phases)},
                "expect": [ev.STEP_COMPLETED],
            },
            f"Cutover {cutover}: past the point of no return ({step})",
            f"{step} completed at {{{{ event.occurred }}}}; a failure from now on pauses the run and asks (roll forward or back).",
        ),
        AutomationSpec(
            NAME_PREFIX + "gone silent",
            f"No step event of a running cutover for {silent_minutes:g} minutes.",
            {
                "type": "event",
                "posture": "Proactive",
                "threshold": 1,
                "within": timedelta(minutes=silent_minutes).total_seconds(),
                "match": {ev.LABEL_ID: "cutover.*"},
                "for_each": [ev.LABEL_CUTOVER],
                "after": [ev.STEP_STARTED, ev.STEP_PROGRESS, ev.STEP_FAILED],
                "expect": [
                    ev.STEP_STARTED,
                    ev.STEP_PROGRESS,
                    ev.STEP_FAILED,
                    ev.STEP_COMPLETED,
                    ev.STEP_COMPENSATED,
                    ev.GATE_WAITING,
                    ev.DECISION_WAITING,
                ],
            },
            f"Cutover {cutover}: no news for {silent_minutes:g} minutes",
            f"The last step event was {{{{ event.event }}}} for {step} at {{{{ event.occurred }}}}; is the run stuck?",
        ),
    ]


def save_webhook_block(api_url: str, url: str, name: str = WEBHOOK_BLOCK) -> UUID:
    """A custom webhook notification block that POSTs ``{"subject": ..., "body": ...}``."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    with prefect_client(api_url):
        block = CustomWebhookNotificationBlock(
            name=name, url=url, method="POST", json_data={"subject": "{{subject}}", "body": "{{body}}"}
        )
        block_id = block.save(name, overwrite=True)
    return UUID(str(block_id))


def block_id_by_name(api_url: str, block_type: str, name: str) -> UUID:
    """The id of a saved block (``block_type`` is its slug, e.g. ``slack-webhook``)."""
    from prefect.exceptions import ObjectNotFound

    with prefect_client(api_url) as client:
        try:
            document = client.read_block_document_by_name(name=name, block_type_slug=block_type)
        except ObjectNotFound as exc:
            raise OrchestrationError(f"no {block_type} block named {name} at {api_url}") from exc
    return document.id


def create_automations(
    api_url: str,
    *,
    webhook_url: str | None = None,
    block_id: UUID | None = None,
    silent_minutes: float = 15.0,
    point_of_no_return_phases: Sequence[str] = ("dns_switch",),
) -> list[str]:
    """Create (or replace) the automations, notifying through ``block_id`` or a webhook
    block made for ``webhook_url``. Returns their names."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    if block_id is None:
        if webhook_url is None:
            raise OrchestrationError("the automations need a webhook URL or a notification block")
        block_id = save_webhook_block(api_url, webhook_url)
    names = []
    with prefect_client(api_url) as client:
        for spec in automation_specs(silent_minutes, point_of_no_return_phases):
            for existing in client.read_automations_by_name(spec.name):
                client.delete_automation(existing.id)
            client.create_automation(
                AutomationCore(
                    name=spec.name,
                    description=spec.description,
                    trigger=EventTrigger.model_validate(spec.trigger),
                    actions=[SendNotification(block_document_id=block_id, subject=spec.subject, body=spec.body)],
                )
            )
            names.append(spec.name)
    log.info("automations_created", names=names, api_url=api_url)
    return names


def delete_automations(api_url: str) -> int:
    """Remove every ``cutover: ...`` automation; how many there were."""
    count = 0
    with prefect_client(api_url) as client:
        for automation in client.read_automations():
            if automation.name.startswith(NAME_PREFIX):
                client.delete_automation(automation.id)
                count += 1
    return count
