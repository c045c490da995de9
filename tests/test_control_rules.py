"""The rule state machine and the output arbiter, without Django or a database: a fake clock."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from control.rules import (
    Direction,
    Kind,
    Notify,
    Observation,
    OutputSpec,
    OutputState,
    Phase,
    RuleSpec,
    RuleState,
    Switch,
    SwitchOutput,
    arbitrate,
    evaluate,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HEATER = RuleSpec(
    direction=Direction.BELOW,
    threshold=5.0,
    release=7.0,
    duration=0,
    min_samples=5,
    on_trigger=Switch.ON,
    on_release=Switch.OFF,
)


def fresh(value: float) -> Observation:
    return Observation(value=value, age=10, samples=30)


class Run:
    """Feed observations one per `every` seconds and keep every step."""

    def __init__(self, spec: RuleSpec, state: RuleState | None = None, start: datetime = T0) -> None:
        self.spec, self.state, self.now, self.steps = spec, state or RuleState(), start, []

    def feed(self, observation: Observation, after: float = 5.0):
        self.now += timedelta(seconds=after)
        step = evaluate(self.spec, self.state, observation, self.now)
        self.state = step.state
        self.steps.append(step)
        return step

    def switches(self) -> list[bool | None]:
        return [a.on for s in self.steps for a in s.actions if isinstance(a, SwitchOutput)]

    def notifications(self) -> list[str]:
        return [a.message for s in self.steps for a in s.actions if isinstance(a, Notify)]


def test_first_decision_puts_the_output_in_its_released_state():
    run = Run(HEATER)
    run.feed(fresh(20.0))
    run.feed(fresh(20.0))
    assert run.switches() == [False] and run.state.phase is Phase.IDLE


def test_heater_switches_on_below_the_threshold_and_off_only_above_the_release():
    run = Run(HEATER, state=RuleState(since=T0))
    run.feed(fresh(6.0))
    run.feed(fresh(4.9))
    assert run.switches() == [True] and run.state.phase is Phase.TRIGGERED
    run.feed(fresh(6.5))  # back above the threshold but inside the hysteresis band: stays on
    run.feed(fresh(7.0))  # at the release threshold: not yet past it
    assert run.switches() == [True]
    run.feed(fresh(7.1))
    assert run.switches() == [True, False] and run.state.phase is Phase.IDLE


def test_vent_rule_above_works_the_other_way_round():
    vent = replace(HEATER, direction=Direction.ABOVE, threshold=30.0, release=27.0)
    run = Run(vent, state=RuleState(since=T0))
    for value in (29, 31, 28, 26.9):
        run.feed(fresh(value))
    assert run.switches() == [True, False]


def test_condition_must_hold_for_the_whole_duration_before_triggering():
    run = Run(replace(HEATER, duration=600))
    run.feed(fresh(4.0))
    assert run.state.phase is Phase.PENDING and run.switches() == []
    run.feed(fresh(4.0), after=590)
    assert run.switches() == []
    run.feed(fresh(4.0), after=10)
    assert run.switches() == [True]


def test_a_break_in_the_condition_restarts_the_duration():
    run = Run(replace(HEATER, duration=600))
    run.feed(fresh(4.0))
    run.feed(fresh(5.5), after=500)  # warmer for a moment: the wait starts over
    assert run.state.phase is Phase.IDLE
    run.feed(fresh(4.0), after=10)
    run.feed(fresh(4.0), after=590)
    assert run.switches() == []
    run.feed(fresh(4.0), after=20)
    assert run.switches() == [True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=5.0, max_value=7.0), min_size=1, max_size=200))
def test_values_inside_the_hysteresis_band_never_switch_after_the_first_trigger(values):
    run = Run(HEATER)
    run.feed(fresh(4.0))  # triggered once
    for value in values:
        run.feed(fresh(value))
    assert run.switches() == [True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-10, max_value=40), max_size=300))
def test_switches_always_alternate_on_and_off(values):
    run = Run(HEATER)
    for value in values:
        run.feed(fresh(value))
    switches = run.switches()
    assert all(a != b for a, b in itertools.pairwise(switches))


def test_old_data_drives_the_output_to_its_safe_state_once_and_recovers():
    run = Run(replace(HEATER, max_age=120))
    run.feed(fresh(4.0))
    run.feed(Observation(value=4.0, age=121, samples=30))
    run.feed(Observation(value=4.0, age=200, samples=30))
    assert run.state.phase is Phase.STALE
    safe = [a for s in run.steps for a in s.actions if isinstance(a, SwitchOutput) and a.safe]
    assert len(safe) == 1 and "121.0s old (max age 120s)" in safe[0].reason  # never "120s old (max age 120s)"
    run.feed(fresh(4.0))  # fresh and still cold: on again at once (duration 0)
    assert run.state.phase is Phase.TRIGGERED and run.switches()[-1] is True


def test_sparse_data_is_not_acted_on():
    run = Run(HEATER)
    run.feed(Observation(value=1.0, age=5, samples=2))
    assert run.state.phase is Phase.STALE and run.switches() == [None]
    assert "only 2 samples" in run.steps[-1].message


def test_a_missing_reading_is_stale():
    run = Run(HEATER)
    run.feed(Observation(value=None))
    assert run.state.phase is Phase.STALE


def test_recovering_from_stale_with_nothing_to_do_applies_the_release_action():
    vent = replace(HEATER, direction=Direction.ABOVE, threshold=30, release=27)
    run = Run(vent)
    run.feed(Observation(value=None))  # vent to its safe state (open)
    run.feed(fresh(20))  # cool again: close it
    assert run.switches() == [None, False]


def test_max_run_switches_off_and_waits_for_the_release_before_watering_again():
    watering = RuleSpec(
        direction=Direction.ABOVE,
        threshold=700,
        release=500,
        duration=600,
        max_run=300,
        on_trigger=Switch.ON,
        on_release=Switch.OFF,
        notify_trigger=True,
        cooldown=60,
    )
    run = Run(watering)
    run.feed(fresh(750))
    run.feed(fresh(750), after=600)
    assert run.switches() == [True]
    run.feed(fresh(750), after=300)  # the probe never gets wet: a broken pipe or probe
    assert run.switches() == [True, False] and run.state.phase is Phase.EXHAUSTED
    assert "max run" in run.notifications()[-1]
    run.feed(fresh(750), after=3600)
    assert run.switches() == [True, False]
    run.feed(fresh(450))  # wet at last: re-armed, and can water again when it dries
    run.feed(fresh(750))
    run.feed(fresh(750), after=600)
    assert run.switches() == [True, False, True]


def test_active_hours_in_local_time_block_triggers_and_release_at_the_end():
    vent = replace(
        HEATER,
        direction=Direction.ABOVE,
        threshold=30,
        release=27,
        active_from=time(8, 0),
        active_until=time(20, 0),
        tz=ZoneInfo("Europe/Berlin"),
    )
    start = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
    run = Run(vent, start=start)
    run.feed(fresh(35))
    assert run.state.phase is Phase.INACTIVE and run.switches() == []
    run.feed(fresh(35), after=3600)  # 08:00:05 in Berlin
    assert run.switches() == [True]
    run.feed(fresh(35), after=12 * 3600)  # 20:00:10: window closed, vent released
    assert run.switches() == [True, False] and run.state.phase is Phase.INACTIVE


def test_active_hours_may_wrap_midnight():
    night = replace(HEATER, active_from=time(22, 0), active_until=time(6, 0))
    run = Run(night, start=datetime(2026, 11, 24, 23, 0, tzinfo=UTC))
    run.feed(fresh(1))
    assert run.switches() == [True]
    run = Run(night, start=datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    run.feed(fresh(1))
    assert run.switches() == []


def test_offline_rule_triggers_after_n_minutes_of_silence_and_releases_when_heard_again():
    offline = RuleSpec(kind=Kind.OFFLINE, offline_after=600, notify_trigger=True, notify_release=True, cooldown=0)
    run = Run(offline)
    run.feed(Observation(value=None, age=599))
    assert run.state.phase is Phase.IDLE
    run.feed(Observation(value=None, age=601))
    assert run.state.phase is Phase.TRIGGERED and "601s ago" in run.notifications()[0]
    run.feed(Observation(value=None, age=2))
    assert run.state.phase is Phase.IDLE and len(run.notifications()) == 2


def test_offline_rule_counts_a_sensor_never_heard_as_offline():
    run = Run(RuleSpec(kind=Kind.OFFLINE, offline_after=600))
    run.feed(Observation(value=None))
    assert run.state.phase is Phase.TRIGGERED


def test_cool_down_holds_back_notifications_of_a_flapping_condition_then_sums_them_up():
    spec = replace(HEATER, notify_trigger=True, notify_release=True, cooldown=900)
    run = Run(spec)
    for _ in range(50):  # flapping every 5 s for four minutes
        run.feed(fresh(4.0))
        run.feed(fresh(8.0))
    assert len(run.notifications()) == 1
    run.feed(fresh(8.0), after=900)
    messages = run.notifications()
    assert len(messages) == 2 and "99 changes were not sent" in messages[1] and "now idle" in messages[1]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=12), st.integers(1, 120)), max_size=200))
def test_no_two_notifications_are_closer_than_the_cool_down(steps):
    spec = replace(HEATER, notify_trigger=True, notify_release=True, cooldown=300)
    run = Run(spec)
    sent: list[datetime] = []
    for value, after in steps:
        step = run.feed(fresh(value), after=after)
        if any(isinstance(a, Notify) for a in step.actions):
            sent.append(run.now)
    assert all((b - a).total_seconds() >= 300 for a, b in itertools.pairwise(sent))


def test_restart_resumes_from_the_stored_state_without_switching_again():
    run = Run(HEATER)
    run.feed(fresh(4.0))
    stored = run.state  # what the database keeps
    after_restart = Run(HEATER, state=stored, start=run.now + timedelta(minutes=3))
    after_restart.feed(fresh(4.5))
    assert after_restart.switches() == []  # still on: no second command, no flapping
    after_restart.feed(fresh(8.0))
    assert after_restart.switches() == [False]


def test_restart_keeps_a_pending_duration_running():
    spec = replace(HEATER, duration=600)
    run = Run(spec)
    run.feed(fresh(4.0))
    after_restart = Run(spec, state=run.state, start=run.now + timedelta(seconds=590))
    after_restart.feed(fresh(4.0), after=10)
    assert after_restart.switches() == [True]


# --- the output arbiter ---------------------------------------------------------------------
PUMP = OutputSpec(safe_on=False, min_on=60, min_off=300)


def test_minimum_off_time_holds_back_a_new_start_until_it_has_passed():
    state = OutputState(on=False, changed_at=T0)
    verdict = arbitrate(PUMP, state, True, T0 + timedelta(seconds=100))
    assert not verdict.switch and verdict.wait_until == T0 + timedelta(seconds=300)
    assert arbitrate(PUMP, state, True, T0 + timedelta(seconds=300)).switch


def test_minimum_on_time_holds_back_switching_off_but_not_the_safe_state():
    state = OutputState(on=True, changed_at=T0)
    assert not arbitrate(PUMP, state, False, T0 + timedelta(seconds=10)).switch
    assert arbitrate(PUMP, state, False, T0 + timedelta(seconds=10), safe=True).switch


def test_manual_override_holds_against_rules_until_it_ends():
    state = OutputState(on=True, changed_at=T0, override_until=T0 + timedelta(hours=1))
    assert not arbitrate(PUMP, state, False, T0 + timedelta(minutes=30), safe=True).switch
    assert arbitrate(PUMP, state, False, T0 + timedelta(minutes=61)).switch


def test_an_output_never_commanded_is_switched_at_once():
    assert arbitrate(PUMP, OutputState(), False, T0).switch
    assert not arbitrate(PUMP, OutputState(on=False, changed_at=T0), False, T0).switch
