"""The rule state machine and the output arbiter: plain Python, no Django, an injectable clock.

`evaluate(spec, state, observation, now)` turns what a rule saw (a value, its age and how
many samples it rests on) into a new state and a list of actions. `arbitrate(...)` decides
whether an output may change now (minimum on/off times, manual override, fail-safe). The
ORM layer (`control/engine.py`) stores the states and carries out the actions, so a restart
resumes exactly where the last decision left off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, tzinfo
from enum import StrEnum


class Phase(StrEnum):
    IDLE = "idle"  # condition does not hold
    PENDING = "pending"  # condition holds, waiting for it to hold `duration`
    TRIGGERED = "triggered"  # trigger actions done; waiting for the release threshold
    EXHAUSTED = "exhausted"  # triggered longer than max_run: released, re-armed by the release threshold
    STALE = "stale"  # data too old or too sparse: outputs in their safe state
    INACTIVE = "inactive"  # outside the active hours


class Kind(StrEnum):
    THRESHOLD = "threshold"
    OFFLINE = "offline"


class Direction(StrEnum):
    BELOW = "below"
    ABOVE = "above"


class Switch(StrEnum):
    """What a rule asks of its output on trigger / release."""

    NOTHING = "nothing"
    ON = "on"
    OFF = "off"


@dataclass(frozen=True)
class RuleSpec:
    """A rule's configuration as the state machine needs it (durations in seconds)."""

    kind: Kind = Kind.THRESHOLD
    direction: Direction = Direction.BELOW
    threshold: float = 0.0
    release: float = 0.0
    duration: float = 0.0
    max_age: float = 120.0
    min_samples: int = 1
    offline_after: float = 600.0
    max_run: float | None = None
    active_from: time | None = None
    active_until: time | None = None
    tz: tzinfo | None = None  # the zone active hours are given in
    on_trigger: Switch = Switch.NOTHING
    on_release: Switch = Switch.NOTHING
    notify_trigger: bool = False
    notify_release: bool = False
    cooldown: float = 900.0


@dataclass(frozen=True)
class RuleState:
    """What a rule remembers between evaluations (stored in the database)."""

    phase: Phase = Phase.IDLE
    since: datetime | None = None
    last_notified: datetime | None = None
    suppressed: int = 0  # notifications held back by the cool-down since the last one sent


@dataclass(frozen=True)
class Observation:
    """What the data says now: a calibrated mean (None: no reading), its age in seconds, its samples."""

    value: float | None
    age: float = math.inf
    samples: int = 0


@dataclass(frozen=True)
class SwitchOutput:
    """Drive the rule's output on/off; `safe` means: to the output's declared safe state."""

    on: bool | None
    reason: str
    safe: bool = False


@dataclass(frozen=True)
class Notify:
    message: str


Action = SwitchOutput | Notify


@dataclass(frozen=True)
class Step:
    state: RuleState
    actions: list[Action] = field(default_factory=list)
    transition: str = ""  # "trigger", "release", "stale", ... ("" when nothing changed)
    message: str = ""


def in_active_hours(spec: RuleSpec, now: datetime) -> bool:
    """Active hours are a local time window; from > until wraps midnight (22:00-06:00)."""
    if spec.active_from is None or spec.active_until is None or spec.active_from == spec.active_until:
        return True
    local = now.astimezone(spec.tz).time() if spec.tz is not None else now.time()
    if spec.active_from < spec.active_until:
        return spec.active_from <= local < spec.active_until
    return local >= spec.active_from or local < spec.active_until


def describe(observation: Observation) -> str:
    if observation.value is None:
        return "no reading" if math.isinf(observation.age) else f"no reading, last report {observation.age:.0f}s ago"
    return f"{observation.value:.2f} from {observation.samples} samples, {observation.age:.0f}s old"


def condition_holds(spec: RuleSpec, observation: Observation) -> bool:
    if spec.kind is Kind.OFFLINE:
        return observation.age > spec.offline_after
    assert observation.value is not None
    if spec.direction is Direction.BELOW:
        return observation.value < spec.threshold
    return observation.value > spec.threshold


def released(spec: RuleSpec, observation: Observation) -> bool:
    """Past the release threshold (the hysteresis band lies between it and the trigger threshold)."""
    if spec.kind is Kind.OFFLINE:
        return observation.age <= spec.offline_after
    assert observation.value is not None
    if spec.direction is Direction.BELOW:
        return observation.value > spec.release
    return observation.value < spec.release


def usable(spec: RuleSpec, observation: Observation) -> str:
    """'' when the data may be acted on, else why not (the fail-safe reason)."""
    if spec.kind is Kind.OFFLINE:
        return ""  # silence is what an offline rule looks for
    if observation.value is None:
        return f"no reading ({describe(observation)})"
    if observation.age > spec.max_age:
        return f"data is {observation.age:.1f}s old (max age {spec.max_age:g}s)"
    if observation.samples < spec.min_samples:
        return f"only {observation.samples} samples (at least {spec.min_samples} needed)"
    return ""


def _switch(choice: Switch, reason: str) -> list[Action]:
    if choice is Switch.NOTHING:
        return []
    return [SwitchOutput(on=choice is Switch.ON, reason=reason)]


def evaluate(spec: RuleSpec, state: RuleState, observation: Observation, now: datetime) -> Step:
    """One decision: the new state and what to do, with a message saying why."""
    seen = describe(observation)
    step = _decide(spec, state, observation, now, seen)
    return _notifications(spec, state, step, now)


def _enter(phase: Phase, now: datetime, state: RuleState) -> RuleState:
    return replace(state, phase=phase, since=now)


def _decide(spec: RuleSpec, state: RuleState, observation: Observation, now: datetime, seen: str) -> Step:
    phase = state.phase
    # Outside the active hours nothing triggers; a triggered rule is released.
    if not in_active_hours(spec, now):
        if phase is Phase.INACTIVE:
            return Step(state)
        actions = _switch(spec.on_release, "outside active hours") if phase is Phase.TRIGGERED else []
        return Step(_enter(Phase.INACTIVE, now, state), actions, "inactive", f"outside active hours ({seen})")

    problem = usable(spec, observation)
    if problem:
        if phase is Phase.STALE:
            return Step(state)
        actions: list[Action] = [SwitchOutput(on=None, reason=problem, safe=True)]
        return Step(_enter(Phase.STALE, now, state), actions, "stale", f"fail-safe: {problem}")

    if phase is Phase.STALE and not condition_holds(spec, observation):
        # Fresh data again and nothing to do: leave the safe state for the released one.
        return Step(
            _enter(Phase.IDLE, now, state), _switch(spec.on_release, seen), "recovered", f"data usable again: {seen}"
        )
    if phase in (Phase.STALE, Phase.INACTIVE):
        # Fresh data again (or the window opened) and the condition holds: start over and decide at once.
        state = _enter(Phase.IDLE, now, state)
        phase = Phase.IDLE

    if phase is Phase.TRIGGERED:
        if released(spec, observation):
            return Step(_enter(Phase.IDLE, now, state), _switch(spec.on_release, seen), "release", f"released: {seen}")
        if spec.max_run is not None and state.since is not None and (now - state.since).total_seconds() >= spec.max_run:
            reason = f"ran {spec.max_run:.0f}s (max run) without releasing: {seen}"
            return Step(_enter(Phase.EXHAUSTED, now, state), _switch(spec.on_release, reason), "exhausted", reason)
        return Step(state)

    if phase is Phase.EXHAUSTED:
        if released(spec, observation):
            return Step(_enter(Phase.IDLE, now, state), [], "rearmed", f"re-armed: {seen}")
        return Step(state)

    if not condition_holds(spec, observation):
        if phase is Phase.IDLE and state.since is None:
            # A rule's first decision: put its output in the released state, so it is known.
            return Step(
                _enter(Phase.IDLE, now, state), _switch(spec.on_release, seen), "initial", f"first look: {seen}"
            )
        if phase is Phase.PENDING:
            return Step(_enter(Phase.IDLE, now, state), [], "cleared", f"condition cleared before its duration: {seen}")
        return Step(state)

    if phase is Phase.IDLE:
        state = _enter(Phase.PENDING, now, state)
    held = (now - state.since).total_seconds() if state.since is not None else 0.0
    duration = 0.0 if spec.kind is Kind.OFFLINE else spec.duration
    if held >= duration:
        reason = f"triggered: {seen}" + (f", held {held:.0f}s" if duration else "")
        return Step(_enter(Phase.TRIGGERED, now, state), _switch(spec.on_trigger, seen), "trigger", reason)
    if phase is Phase.IDLE:
        return Step(state, [], "pending", f"condition holds, waiting {duration:.0f}s: {seen}")
    return Step(state)


def _notifications(spec: RuleSpec, before: RuleState, step: Step, now: datetime) -> Step:
    """Add the notifications a transition asks for, held back by the cool-down."""
    wanted = (
        (step.transition == "trigger" and spec.notify_trigger)
        or (step.transition in ("release", "recovered") and spec.notify_release)
        # Fail-safe and a run that never reached its target are always worth telling.
        or (step.transition in ("stale", "exhausted") and (spec.notify_trigger or spec.notify_release))
    )
    state = step.state
    cooling = state.last_notified is not None and (now - state.last_notified).total_seconds() < spec.cooldown
    if wanted and cooling:
        return replace(step, state=replace(state, suppressed=state.suppressed + 1))
    if wanted:
        message = step.message
        if state.suppressed:
            message += f" ({state.suppressed} earlier changes not sent during the cool-down)"
        return replace(
            step,
            state=replace(state, last_notified=now, suppressed=0),
            actions=[*step.actions, Notify(message)],
        )
    if state.suppressed and not cooling:
        # The cool-down is over and changes were held back: say where things stand now.
        summary = f"{state.suppressed} changes were not sent during the cool-down; now {state.phase}"
        return replace(
            step,
            state=replace(state, last_notified=now, suppressed=0),
            actions=[*step.actions, Notify(summary)],
        )
    return step


# --- outputs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputSpec:
    safe_on: bool = False  # the state the output is driven to when its rule's data is unusable
    min_on: float = 0.0
    min_off: float = 0.0


@dataclass(frozen=True)
class OutputState:
    on: bool | None = None  # last commanded state; None: never commanded
    changed_at: datetime | None = None
    override_until: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    switch: bool  # send a command now
    wait_until: datetime | None = None  # a later moment the wish may be granted (minimum on/off time)
    why: str = ""


def arbitrate(spec: OutputSpec, state: OutputState, wanted: bool, now: datetime, safe: bool = False) -> Verdict:
    """May the output be switched to `wanted` now?

    A manual override holds until it ends. Minimum on/off times hold back rule decisions,
    but not the safe state: when the data a rule depends on is gone, safety comes first.
    """
    if state.override_until is not None and now < state.override_until:
        return Verdict(False, state.override_until, "manual override")
    if state.on is wanted:
        return Verdict(False, None, "already there")
    if safe or state.on is None or state.changed_at is None:
        return Verdict(True)
    minimum = spec.min_on if state.on else spec.min_off
    ready = state.changed_at + timedelta(seconds=minimum)
    if now < ready:
        return Verdict(False, ready, f"minimum {'on' if state.on else 'off'} time")
    return Verdict(True)
