"""The ORM layer of control: read rules and data, run the state machine, record, dispatch.

`Engine.step()` is one pass: evaluate every enabled rule (`control.rules.evaluate`), move
each output toward what its rules (or a person) want (`control.rules.arbitrate`), complete
the events of commands and notifications that have finished on the dispatcher's worker
threads, and follow up outputs whose device has not confirmed (retries with back-off, one
alert) or is due a keep-alive. All database work happens in the caller's thread; the
workers only talk to devices, mail servers and webhooks.

Each decision is one transaction: a rule's new state, its events and its output's wish; a
command's new state and its event. What must go out (a command, a notification) is handed to
the dispatcher only after that transaction has committed, so a database error in the middle
leaves no half-made decision, and a crash after it leaves a commanded state that the next
start sends again.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import DatabaseError, transaction
from django.utils import timezone

from sensors.models import Sensor

from . import rules
from .models import Event, Output, Rule
from .transports import DeliveryError, Dispatcher, Job, Result, post_json, redact

logger = logging.getLogger(__name__)

# A rule whose evaluation raises (a bug, bad data) is retried after 5 s, 10 s, 20 s ... up to 5 min.
RULE_RETRY_FIRST_SECONDS = 5.0
RULE_RETRY_MAX_SECONDS = 300.0
# A command the device has not confirmed is sent again after 5 s, 10 s, 20 s ... up to CONTROL_RETRY_MAX.
COMMAND_RETRY_FIRST_SECONDS = 5.0
# The sensors rules read get live values (the collector's LiveReading) for this long, renewed
# every WATCH_RENEW_SECONDS: a control process that stops lets them lapse on their own.
WATCH_SECONDS = 180.0
WATCH_RENEW_SECONDS = 60.0


def send_email(recipients: list[str], subject: str, body: str) -> str:
    """Through Django's e-mail settings; DeliveryError with the server's reason on failure."""
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"e-mail to {', '.join(recipients)}: {exc}") from exc
    return f"e-mail accepted for {', '.join(recipients)}"


class Engine:
    def __init__(self, dispatcher: Dispatcher, clock: Callable[[], datetime] = timezone.now) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self._broken: dict[int, tuple[int, datetime]] = {}  # rule id -> (failures in a row, next try)
        self._in_flight: dict[int, int] = {}  # output id -> commands on the dispatcher
        self._last_sent: dict[int, datetime] = {}  # output id -> when its commanded state was last sent
        self._failures: dict[int, int] = {}  # output id -> failed sends since it was last confirmed
        self._watch_renewed: datetime | None = None

    # --- one pass -----------------------------------------------------------------------------
    def step(self) -> None:
        self.watch_sensors()
        self.evaluate_rules()
        self.apply_outputs()
        self.record_results()
        self.follow_up_outputs()

    def start(self) -> None:
        """After a (re)start: send every output its recorded state again, so a device that lost
        it (a plug that rebooted while control was down) matches what the log says."""
        for output in Output.objects.exclude(is_on=None):
            if output.transport == Output.Transport.MANUAL:
                continue  # a person already got that message; do not repeat it at every restart
            self.command(output, bool(output.is_on), "re-asserted after control started", kind=Event.Kind.START)

    def watch_sensors(self, force: bool = False) -> None:
        """Ask the collector for live values of the sensors the rules read (renewed every minute)."""
        now = self.clock()
        if (
            not force
            and self._watch_renewed is not None
            and now - self._watch_renewed < timedelta(seconds=WATCH_RENEW_SECONDS)
        ):
            return
        ids: set[int] = set()
        for rule in Rule.objects.filter(enabled=True).select_related("location"):
            ids.update(rule.watched_sensor_ids(now))
        if ids:
            Sensor.objects.filter(pk__in=ids).update(live_until=now + timedelta(seconds=WATCH_SECONDS))
        self._watch_renewed = now

    def evaluate_rules(self) -> None:
        for rule in Rule.objects.filter(enabled=True).select_related("sensor", "location", "output"):
            failures, next_try = self._broken.get(rule.pk, (0, None))
            if next_try is not None and self.clock() < next_try:
                continue  # backed off after failing
            try:
                self.evaluate(rule)
            except DatabaseError:
                raise  # the command retries the whole pass
            except Exception:  # one broken rule must not stop the others
                failures += 1
                delay = min(RULE_RETRY_MAX_SECONDS, RULE_RETRY_FIRST_SECONDS * 2 ** (failures - 1))
                self._broken[rule.pk] = (failures, self.clock() + timedelta(seconds=delay))
                if failures == 1:  # reported once, with the traceback; then retried ever more slowly
                    logger.exception("rule %r could not be evaluated; retrying with back-off", rule.name)
                continue
            if failures:
                del self._broken[rule.pk]
                logger.info("rule %r evaluates again after %d failures", rule.name, failures)

    @transaction.atomic
    def evaluate(self, rule: Rule) -> None:
        """One rule, in one transaction: observe, decide, store the state, record the transition, act."""
        now = self.clock()
        observation = rule.observe(now)
        step = rules.evaluate(rule.spec(), rule.state(), observation, now)
        rule.store(step.state, observation, now)
        if step.transition:
            self._event(step.transition, rule.output, step.message, now, rule=rule, observation=observation)
        for action in step.actions:
            if isinstance(action, rules.SwitchOutput) and rule.output is not None:
                self.want(rule.output, action, rule, observation, now)
            elif isinstance(action, rules.Notify):
                self.notify(rule, action.message, observation, now)

    def want(
        self, output: Output, action: rules.SwitchOutput, rule: Rule, observation: rules.Observation, now: datetime
    ) -> None:
        """Record what a rule asks of its output; `apply_outputs` carries it out when allowed."""
        on = output.safe_on if action.safe else bool(action.on)
        label = "safe state " if action.safe else ""
        output.wanted_on, output.wanted_safe = on, action.safe
        output.wanted_reason = f"{rule.name}: {label}{'ON' if on else 'OFF'} ({action.reason})"[:300]
        output.save(update_fields=["wanted_on", "wanted_safe", "wanted_reason"])
        verdict = rules.arbitrate(output.arbiter_spec(), output.arbiter_state(), on, now, safe=action.safe)
        if not verdict.switch and verdict.wait_until is not None:
            until = timezone.localtime(verdict.wait_until).strftime("%H:%M:%S")
            self._event(
                Event.Kind.HELD,
                output,
                f"{output.name} stays {output.state_label}: {verdict.why} until {until}",
                now,
                rule=rule,
                observation=observation,
            )

    def apply_outputs(self) -> None:
        for output in Output.objects.all():
            with transaction.atomic():
                self.apply_output(output)

    def apply_output(self, output: Output) -> None:
        """Move one output toward what a person or its rules want (the caller holds a transaction)."""
        now = self.clock()
        if output.overridden(now):
            if output.override_on is not None and output.override_on != output.is_on:
                self.command(output, output.override_on, f"manual override by {output.override_by}")
            return
        if output.override_until is not None:  # an override just ended: back to the rules
            output.override_on, output.override_until, output.override_by = None, None, ""
            output.save(update_fields=["override_on", "override_until", "override_by"])
        if output.wanted_on is None:
            return
        verdict = rules.arbitrate(
            output.arbiter_spec(), output.arbiter_state(), output.wanted_on, now, safe=output.wanted_safe
        )
        if verdict.switch:
            self.command(output, output.wanted_on, output.wanted_reason)

    def record_results(self) -> None:
        for result in self.dispatcher.results():
            self._complete(result)

    # --- commands and notifications ---------------------------------------------------------------
    def command(self, output: Output, on: bool, reason: str, kind: str = Event.Kind.COMMAND) -> None:
        """Record the new commanded state (not confirmed yet) and its event; send it once they are committed."""
        now = self.clock()
        with transaction.atomic():
            output.is_on, output.changed_at, output.change_reason, output.delivered = on, now, reason[:300], None
            output.unconfirmed_since = now
            output.save(update_fields=["is_on", "changed_at", "change_reason", "delivered", "unconfirmed_since"])
            event = self._event(kind, output, f"{output.name} {'ON' if on else 'OFF'}: {reason}", now)
            self._failures.pop(output.pk, None)
            transaction.on_commit(lambda: self._send(output, on, event.pk))

    def follow_up_outputs(self) -> None:
        """Send again what a device has not confirmed (back-off), alert once, and keep confirmed ones alive."""
        for output in Output.objects.exclude(is_on=None).exclude(transport=Output.Transport.MANUAL):
            if self._in_flight.get(output.pk):
                continue
            now = self.clock()
            sent = self._last_sent.get(output.pk)
            if output.unconfirmed_since is not None:
                failures = self._failures.get(output.pk, 0)
                if sent is None or now >= sent + timedelta(seconds=self._retry_delay(failures)):
                    self._send(output, bool(output.is_on))
                alert_after = timedelta(seconds=settings.CONTROL_UNCONFIRMED_ALERT)
                if not output.unconfirmed_alerted and now - output.unconfirmed_since >= alert_after:
                    self._alert_unconfirmed(output, now)
            elif output.keep_alive and (sent is None or now - sent >= output.keep_alive):
                self._send(output, bool(output.is_on))  # a plug that rebooted into its default is put right

    @staticmethod
    def _retry_delay(failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(settings.CONTROL_RETRY_MAX, COMMAND_RETRY_FIRST_SECONDS * 2 ** (failures - 1))

    def _send(self, output: Output, on: bool, event_id: int | None = None) -> None:
        """Hand one command to the dispatcher (after the transaction that decided it has committed)."""
        send = output.sender(on, lambda message: self.tell_people(f"[Greenhouse] {output.name}", message))
        self._in_flight[output.pk] = self._in_flight.get(output.pk, 0) + 1
        self._last_sent[output.pk] = self.clock()
        self.dispatcher.submit(
            Job(f"output:{output.pk}", send, tag=(event_id, output.pk, on), retries=settings.CONTROL_COMMAND_ATTEMPTS)
        )

    def _alert_unconfirmed(self, output: Output, now: datetime) -> None:
        since = timezone.localtime(output.unconfirmed_since).strftime("%H:%M:%S")
        text = (
            f"{output.name} is commanded {'ON' if output.is_on else 'OFF'} but the device has not confirmed it "
            f"since {since} (retrying): {output.last_error or 'no answer yet'}"
        )
        with transaction.atomic():
            Output.objects.filter(pk=output.pk).update(unconfirmed_alerted=True)
            self._tell(output, text, now)

    def _tell(self, output: Output, text: str, now: datetime) -> None:
        """An event and a message to the grower by every configured channel (after commit)."""
        event = self._event(Event.Kind.NOTIFICATION, output, text, now)
        send = lambda: self.tell_people(f"[Greenhouse] {output.name}", text)  # noqa: E731
        self._submit_after_commit(
            Job(f"alert:{event.pk}", send, event.pk, settings.CONTROL_COMMAND_ATTEMPTS, supersedable=False)
        )

    def notify(self, rule: Rule, message: str, observation: rules.Observation, now: datetime) -> None:
        """One event and one job per channel (e-mail, webhook) the rule's notifications go to."""
        recipients = rule.email_addresses() or list(settings.CONTROL_NOTIFY_EMAILS)
        webhook = rule.webhook_url or settings.CONTROL_NOTIFY_WEBHOOK
        text = f"{rule.name}: {message}"
        if not recipients and not webhook:
            self._event(
                Event.Kind.NOTIFICATION, rule.output, f"not sent (no recipients configured): {text}", now, rule=rule
            )
            return
        attempts = settings.CONTROL_COMMAND_ATTEMPTS
        if recipients:
            event = self._event(Event.Kind.NOTIFICATION, rule.output, f"e-mail: {text}", now, rule=rule)
            subject = f"[Greenhouse] {text}"[:150]
            send = lambda: send_email(recipients, subject, text)  # noqa: E731
            self._submit_after_commit(Job(f"mail:{event.pk}", send, event.pk, attempts, supersedable=False))
        if webhook:
            payload = {
                "rule": rule.name,
                "phase": rule.phase,
                "message": message,
                "value": observation.value,
                "age_seconds": rule.last_age,
                "samples": observation.samples,
                "output": rule.output.name if rule.output else None,
                "time": now.isoformat(),
            }
            event = self._event(Event.Kind.NOTIFICATION, rule.output, f"webhook: {text}", now, rule=rule)
            send = lambda: post_json(webhook, payload, settings.CONTROL_COMMAND_TIMEOUT)  # noqa: E731
            self._submit_after_commit(Job(f"hook:{event.pk}", send, event.pk, attempts, supersedable=False))

    def _submit_after_commit(self, job: Job) -> None:
        """What a decision sends goes out only once its transaction has committed (at once outside one)."""
        transaction.on_commit(lambda: self.dispatcher.submit(job))

    @staticmethod
    def tell_people(subject: str, message: str) -> str:
        """A manual output's 'command': tell the grower by every configured channel (worker thread)."""
        answers, errors = [], []
        if settings.CONTROL_NOTIFY_EMAILS:
            try:
                answers.append(send_email(list(settings.CONTROL_NOTIFY_EMAILS), subject, message))
            except DeliveryError as exc:
                errors.append(str(exc))
        if settings.CONTROL_NOTIFY_WEBHOOK:
            try:
                answers.append(post_json(settings.CONTROL_NOTIFY_WEBHOOK, {"message": message, "subject": subject}))
            except DeliveryError as exc:
                errors.append(str(exc))
        if not answers:
            raise DeliveryError(
                "; ".join(errors) or "nobody to tell: set CONTROL_NOTIFY_EMAILS or CONTROL_NOTIFY_WEBHOOK"
            )
        return "; ".join(answers + errors)

    # --- internals ------------------------------------------------------------------------------
    def _complete(self, result: Result) -> None:
        detail = redact(result.detail)  # a URL's password or token never reaches the log or a page
        if not result.job.key.startswith("output:"):
            Event.objects.filter(pk=result.job.tag).update(ok=result.ok, detail=detail[:2000])
            if not result.ok:
                logger.warning("%s failed after %d attempts: %s", result.job.key, result.attempts, detail)
            return
        event_id, output_id, on = result.job.tag
        self._in_flight[output_id] = max(0, self._in_flight.get(output_id, 0) - 1)
        if event_id is not None:
            Event.objects.filter(pk=event_id).update(ok=result.ok, detail=detail[:2000])
        if result.detail == "superseded by a newer command":
            return
        self._confirm(output_id, on, result.ok, detail)

    def _confirm(self, output_id: int, on: bool, ok: bool, detail: str) -> None:
        """What a command's answer says about its output: confirmed, or not (retried, alerted once)."""
        now = self.clock()
        with transaction.atomic():
            output = Output.objects.select_for_update().filter(pk=output_id).first()
            if output is None or output.is_on != on:
                return  # deleted, or commanded otherwise since: this answer says nothing about it
            if ok:
                alerted, since = output.unconfirmed_alerted, output.unconfirmed_since
                output.confirmed_on, output.confirmed_at, output.delivered = on, now, True
                output.unconfirmed_since, output.unconfirmed_alerted, output.last_error = None, False, ""
                self._failures.pop(output_id, None)
                if alerted and since is not None:
                    since_text = timezone.localtime(since).strftime("%H:%M:%S")
                    self._tell(
                        output,
                        f"{output.name} confirmed {'ON' if on else 'OFF'} (not confirmed since {since_text})",
                        now,
                    )
            else:
                output.delivered, output.last_error = False, detail[:500]
                if output.unconfirmed_since is None:  # a keep-alive that failed: no longer known to be right
                    output.unconfirmed_since = now
                failures = self._failures[output_id] = self._failures.get(output_id, 0) + 1
                if failures & (failures - 1) == 0:  # logged at 1, 2, 4, 8 ... failures, not at every retry
                    logger.warning(
                        "%s not confirmed (%d failed sends; retrying within %gs): %s",
                        output.name,
                        failures,
                        self._retry_delay(failures),
                        detail,
                    )
            output.save(
                update_fields=[
                    "confirmed_on",
                    "confirmed_at",
                    "delivered",
                    "unconfirmed_since",
                    "unconfirmed_alerted",
                    "last_error",
                ]
            )

    @staticmethod
    def _event(
        kind: str,
        output: Output | None,
        message: str,
        now: datetime,
        rule: Rule | None = None,
        observation: rules.Observation | None = None,
    ) -> Event:
        event = Event.objects.create(
            time=now,
            kind=kind,
            rule=rule,
            output=output,
            message=message[:500],
            value=observation.value if observation else None,
            age=rule.last_age if (observation and rule) else None,
            samples=observation.samples if observation else None,
        )
        logger.info("%s: %s", kind, message)
        return event
