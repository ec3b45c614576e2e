"""The tool-change tracker's rules (agent/collector/tracker.py), driven with explicit timestamps: no OPC UA
server, no clock, no sleeps. Every duration below is exact because every signal says when it happened."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.collector.tracker import PROGRAM_MAX_LEN, Tracker, TrackerState
from server.domain.collector import UsageClosed, UsageEvent, UsageOpened

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def watching(tool: int = 0, **found: Any) -> Tracker:
    """A tracker whose first look at the machine, at T0, found `tool` in the spindle (0: empty) and the spindle
    still."""
    tracker = Tracker("M1")
    tracker.reconnected(tool, False, None, at(0), **found)
    return tracker


def opened(events: list[UsageEvent]) -> UsageOpened:
    [event] = events
    assert isinstance(event, UsageOpened), events
    return event


def closed(events: list[UsageEvent]) -> UsageClosed:
    assert events and isinstance(events[0], UsageClosed), events
    return events[0]


# --- tool changes ---------------------------------------------------------------------------------------------


def test_a_tool_change_closes_one_stay_and_opens_the_next_at_the_signal_time() -> None:
    t = watching()
    first = opened(t.tool(1, at(10)))
    assert (first.tool_number, first.start, first.interrupted) == (1, at(10), False)
    events = t.tool(2, at(25))
    assert len(events) == 2
    done, second = closed(events), events[1]
    assert isinstance(second, UsageOpened)
    assert (done.usage_id, done.tool_number, done.start, done.end) == (first.usage_id, 1, at(10), at(25))
    assert done.metrics["time_in_spindle_s"] == 15.0 and done.metrics["tool_number"] == 1
    assert done.metrics["source"] == "COLLECTOR" and "interrupted" not in done.metrics
    assert (second.tool_number, second.start, second.interrupted) == (2, at(25), False)
    assert second.usage_id != first.usage_id
    assert t.tool(2, at(30)) == []  # the same T number again is no change
    last = closed(t.tool(0, at(40)))  # T0: the spindle is empty, nothing opens
    assert (last.usage_id, last.end, last.metrics["time_in_spindle_s"]) == (second.usage_id, at(40), 15.0)
    assert (t.state.tool, t.state.usage_id, t.state.tool_since) == (0, None, None)


def test_quick_t1_t2_t1_gives_three_stays_even_within_one_clock_tick() -> None:
    for times in ([at(10), at(10.001), at(10.002), at(10.003)], [at(10)] * 4):
        t = watching()
        events: list[UsageEvent] = []
        for number, when in zip((1, 2, 1, 0), times, strict=True):
            events += t.tool(number, when)
        opens = [e for e in events if isinstance(e, UsageOpened)]
        closes = [e for e in events if isinstance(e, UsageClosed)]
        assert [e.tool_number for e in opens] == [1, 2, 1] and [e.tool_number for e in closes] == [1, 2, 1]
        # A coarse controller clock gives two stays the same start: the per-machine serial keeps their ids apart.
        assert len({e.usage_id for e in opens}) == 3
        assert [c.usage_id for c in closes] == [o.usage_id for o in opens]


def test_replaying_the_same_transitions_from_the_same_state_gives_the_same_usage_ids() -> None:
    t = watching()
    t.tool(1, at(10))
    saved = t.state
    # An agent that crashed after the commit but before it learnt of it runs the transition again: same ids,
    # which the store refuses as duplicates instead of recording the usage twice.
    assert Tracker("M1", saved).tool(2, at(20)) == Tracker("M1", saved).tool(2, at(20))
    assert Tracker("M2", saved).tool(2, at(20))[1].usage_id != Tracker("M1", saved).tool(2, at(20))[1].usage_id


def test_signals_never_move_time_backwards() -> None:
    t = watching()
    t.tool(1, at(10))
    t.spindle(True, 4000.0, at(20))
    # A queued notification or a controller clock set back: it counts as happening at the last time seen.
    t.spindle(False, 0.0, at(15))
    assert t.state.last_seen == at(20)
    events = t.tool(2, at(5))
    done = closed(events)
    assert done.end == at(20) and done.metrics["spindle_runtime_s"] == 0.0
    assert done.metrics["time_in_spindle_s"] == 10.0
    assert isinstance(events[1], UsageOpened) and events[1].start == at(20)


def test_durations_are_rounded_to_the_millisecond() -> None:
    t = watching()
    t.tool(1, at(1))
    t.spindle(True, 100.0, at(1.0004))
    done = closed(t.tool(0, at(2.23456)))
    assert done.metrics["time_in_spindle_s"] == 1.235 and done.metrics["spindle_runtime_s"] == 1.234


# --- spindle --------------------------------------------------------------------------------------------------


def test_spindle_running_time_counts_only_while_it_turns_with_the_tool_in() -> None:
    t = watching()
    t.spindle(True, 9000.0, at(5))  # turning before any tool is in: credited to nobody
    t.spindle(False, 0.0, at(8))
    t.tool(1, at(10))
    t.spindle(True, 5000.0, at(12))
    t.spindle(True, 8000.0, at(13))  # faster, still one run
    t.spindle(False, 0.0, at(20))  # 8 s
    t.spindle(True, 3000.0, at(30))  # still turning at the change: counted up to it (4 s)
    t1 = closed(t.tool(0, at(34)))
    assert t1.metrics["spindle_runtime_s"] == 12.0 and t1.metrics["time_in_spindle_s"] == 24.0
    assert t1.metrics["max_speed_rpm"] == 8000.0
    t.spindle(True, 12000.0, at(36))  # no tool: its time counts for nobody
    t.tool(2, at(40))  # comes in while the spindle turns: its time starts now, at the speed it turns at
    t.spindle(False, 0.0, at(45))
    t2 = closed(t.tool(0, at(50)))
    assert t2.metrics["spindle_runtime_s"] == 5.0 and t2.metrics["max_speed_rpm"] == 12000.0


def test_spindle_running_time_never_exceeds_the_time_in_the_spindle() -> None:
    # A state saved by an older agent (or a controller clock jump) says more running time than the stay had.
    state = TrackerState(tool=1, usage_id=uuid.uuid4(), tool_since=at(0), runtime_s=100.0, last_seen=at(0), stays=1)
    done = closed(Tracker("M1", state).tool(0, at(10)))
    assert done.metrics["spindle_runtime_s"] == 10.0


# --- program, parts, cycles, modes, operating time -------------------------------------------------------------


def test_programs_are_every_name_seen_while_the_tool_was_in() -> None:
    t = watching()
    t.program("O1", at(5))  # running when the tool comes in: it counts
    assert opened(t.tool(1, at(10))).program == "O1"
    t.program("O2", at(12))
    t.program("O1", at(13))  # seen before: once
    t.program("", at(14))  # no program: not a name
    done = closed(t.tool(0, at(20)))
    assert done.metrics["programs"] == ["O1", "O2"] and done.program == "O1"  # the one it started with
    t.program("O3", at(21))
    t.program("O4", at(22))  # no tool in: only the one current at the next change counts
    t.tool(2, at(30))
    assert closed(t.tool(0, at(31))).metrics["programs"] == ["O4"]


def test_program_names_end_at_a_nul_are_valid_text_and_are_capped() -> None:
    t = watching()
    t.tool(1, at(10))
    t.program("O9\x00\x00\x00garbage", at(11))  # a fixed-size C buffer
    t.program("P" * (PROGRAM_MAX_LEN + 50), at(12))
    t.program("O\udcff1", at(13))  # a byte that was not UTF-8, as asyncua decodes it (surrogateescape)
    assert closed(t.tool(0, at(20))).metrics["programs"] == ["O9", "P" * PROGRAM_MAX_LEN, "O\ufffd1"]
    t.tool(2, at(21))
    t.program("\ud800x", at(22))  # any other lone surrogate
    name = closed(t.tool(0, at(30))).metrics["programs"][-1]
    assert name.endswith("x") and name.encode("utf-8")
    t.reconnected(3, False, None, at(30), program="N\x00x")
    assert closed(t.tool(0, at(40))).metrics["programs"] == ["N"]


def test_parts_are_the_counter_difference_and_never_negative() -> None:
    t = watching()
    t.parts(100, at(5))
    t.tool(1, at(10))
    t.parts(101, at(11))
    t.parts(103, at(12))
    assert closed(t.tool(2, at(20))).metrics["parts"] == 3
    t.parts(1, at(21))  # the counter was reset while T2 was in
    assert closed(t.tool(0, at(30))).metrics["parts"] == 0


def test_cycles_are_program_starts_while_the_tool_was_in() -> None:
    t = watching()
    t.program_status(False, at(5))
    t.program_status(True, at(6))  # a start with no tool in: nobody's cycle
    t.program_status(False, at(7))
    t.tool(1, at(10))
    t.program_status(True, at(11))
    t.program_status(True, at(12))  # still running: not another start
    t.program_status(False, at(13))
    t.program_status(True, at(14))
    t1 = closed(t.tool(2, at(20)))  # the program goes on running into T2's stay: no start for T2
    assert t1.metrics["cycles"] == 2
    assert closed(t.tool(0, at(30))).metrics["cycles"] == 0
    first_report = watching()
    first_report.tool(1, at(10))
    first_report.program_status(True, at(11))  # the first status ever seen says running: not a start we saw
    assert closed(first_report.tool(0, at(20))).metrics["cycles"] == 0


def test_operation_modes_are_every_mode_seen_while_the_tool_was_in() -> None:
    t = watching()
    t.operation_mode("AUTOMATIC", at(5))
    t.tool(1, at(10))
    t.operation_mode("MDA", at(12))
    t.operation_mode("AUTOMATIC", at(13))
    assert closed(t.tool(2, at(20))).metrics["operation_modes"] == ["AUTOMATIC", "MDA"]
    assert closed(t.tool(0, at(30))).metrics["operation_modes"] == ["AUTOMATIC"]  # the mode when T2 came in


def test_operating_time_is_the_counter_difference_and_never_negative() -> None:
    t = watching()
    t.operation_counter(1000.0, at(5))
    t.tool(1, at(10))
    t.operation_counter(1002.5, at(12))
    assert closed(t.tool(2, at(20))).metrics["operation_s"] == 2.5
    t.operation_counter(3.0, at(21))  # the controller reset its counter
    assert closed(t.tool(0, at(30))).metrics["operation_s"] == 0.0


def test_what_a_machine_does_not_report_is_left_out_of_the_metrics() -> None:
    t = watching()  # no speed, part counter, program status, operation mode or operating-time counter
    t.tool(1, at(10))
    t.spindle(True, None, at(12))  # umati: IsRotating, no speed (issue 10, case 6: no max_speed_rpm of 0.0)
    metrics = closed(t.tool(0, at(20))).metrics
    assert set(metrics) == {"source", "tool_number", "time_in_spindle_s", "spindle_runtime_s", "programs"}
    assert metrics["spindle_runtime_s"] == 8.0
    cnc = Tracker("M1")
    cnc.reconnected(0, False, 0.0, at(0))  # a speed is reported, even if it is 0
    cnc.tool(1, at(10))
    assert closed(cnc.tool(0, at(20))).metrics["max_speed_rpm"] == 0.0


# --- outages, restarts, first contact ----------------------------------------------------------------------------


def test_the_same_tool_after_an_outage_goes_on_marked_interrupted_and_the_gap_is_not_running_time() -> None:
    t = watching()
    first = opened(t.tool(1, at(10)))
    t.spindle(True, 5000.0, at(20))
    t.seen(at(30))  # the last data (or keep-alive answer) before the link went down
    assert t.reconnected(1, True, 5000.0, at(90)) == []  # the same stay goes on
    assert t.state.interrupted and t.state.outage_s == 60.0
    t.spindle(False, 0.0, at(100))
    done = closed(t.tool(0, at(110)))
    assert (done.usage_id, done.start, done.end) == (first.usage_id, at(10), at(110))
    # 20->30 seen turning, 90->100 seen turning; the 60 s nobody watched are not credited.
    assert done.metrics["spindle_runtime_s"] == 20.0 and done.metrics["time_in_spindle_s"] == 100.0
    assert done.metrics["interrupted"] is True and done.metrics["x-outage_s"] == 60.0


def test_another_tool_after_an_outage_ends_the_old_stay_when_last_seen() -> None:
    t = watching(parts=0)
    t.tool(1, at(10))
    t.spindle(True, 5000.0, at(15))
    t.parts(3, at(20))
    t.seen(at(30))
    events = t.reconnected(2, True, 4000.0, at(90), parts=7)
    old = closed(events)
    new = events[1]
    assert isinstance(new, UsageOpened)
    assert old.end == at(30) and old.metrics["interrupted"] is True
    assert old.metrics["spindle_runtime_s"] == 15.0
    assert old.metrics["parts"] == 3  # parts made while nobody watched are nobody's
    assert (new.tool_number, new.start, new.interrupted) == (2, at(90), True)
    t.parts(8, at(95))
    t2 = closed(t.tool(0, at(100)))
    assert t2.metrics["parts"] == 1 and t2.metrics["spindle_runtime_s"] == 10.0
    assert t2.metrics["max_speed_rpm"] == 4000.0 and t2.metrics["interrupted"] is True


def test_an_empty_spindle_after_an_outage_ends_the_stay_when_last_seen() -> None:
    t = watching()
    t.tool(1, at(10))
    t.seen(at(30))
    done = closed(t.reconnected(0, False, None, at(90)))
    assert done.end == at(30) and done.metrics["interrupted"] is True
    assert (t.state.tool, t.state.usage_id) == (0, None)


def test_a_tool_already_in_at_the_first_contact_is_opened_interrupted() -> None:
    t = Tracker("M1")
    first = opened(t.reconnected(4, True, 3000.0, at(0), program="O7"))
    assert (first.tool_number, first.start, first.interrupted, first.program) == (4, at(0), True, "O7")
    done = closed(t.tool(0, at(10)))
    assert done.metrics["spindle_runtime_s"] == 10.0 and done.metrics["max_speed_rpm"] == 3000.0
    assert done.metrics["interrupted"] is True and "x-outage_s" not in done.metrics
    assert Tracker("M1").reconnected(0, False, None, at(0)) == []


def test_what_a_reconnect_finds_is_state_not_a_transition() -> None:
    t = watching(program_running=False, mode="AUTOMATIC")
    t.tool(1, at(10))
    t.seen(at(20))
    # Found running after the outage: it may have started long ago, so no cycle; the mode and program found are
    # ones seen during the stay.
    assert t.reconnected(1, False, None, at(50), program_running=True, mode="MDA", program="O5") == []
    done = closed(t.tool(0, at(60)))
    assert done.metrics["cycles"] == 0 and done.metrics["operation_modes"] == ["AUTOMATIC", "MDA"]
    assert done.metrics["programs"] == ["O5"]


def test_a_reconnect_on_a_controller_clock_set_back_counts_no_outage_and_keeps_time_forward() -> None:
    t = watching()
    t.tool(1, at(10))
    t.seen(at(50))
    t.reconnected(1, False, None, at(40))
    assert t.state.outage_s == 0.0 and t.state.last_seen == at(50)
    # A keep-alive is not a change: the tool's leaving keeps its own time, after the last change (10).
    assert closed(t.tool(0, at(45))).end == at(45)


def test_a_restart_resumes_from_the_saved_state() -> None:
    t = watching(parts=10, mode="AUTOMATIC")
    first = opened(t.tool(1, at(10)))
    t.spindle(True, 5000.0, at(12))
    t.program("O1", at(13))
    t.parts(12, at(20))
    t.seen(at(30))
    saved = json.loads(json.dumps(t.state.to_json()))  # what the recorder stores, through JSON
    restored = Tracker("M1", TrackerState.from_json(saved))
    assert restored.state == t.state
    # The agent was down from 30 to 60; the machine is as it was, spindle still turning.
    assert restored.reconnected(1, True, 5000.0, at(60), parts=12) == []
    done = closed(restored.tool(0, at(70)))
    assert (done.usage_id, done.start, done.end) == (first.usage_id, at(10), at(70))
    assert done.metrics["spindle_runtime_s"] == 28.0  # 12->30 and 60->70
    assert done.metrics["x-outage_s"] == 30.0 and done.metrics["interrupted"] is True
    assert done.metrics["parts"] == 2 and done.metrics["programs"] == ["O1"]
    assert done.metrics["operation_modes"] == ["AUTOMATIC"]


def test_saved_state_from_another_agent_version_loads() -> None:
    newer = {**TrackerState().to_json(), "x-field-from-a-newer-agent": 1}
    assert TrackerState.from_json(newer) == TrackerState()
    older = {k: v for k, v in TrackerState(tool=3, stays=4).to_json().items() if k not in ("cycles", "modes", "mode")}
    assert TrackerState.from_json(older) == TrackerState(tool=3, stays=4)


# --- the timing model (README "Collector timing model", issue 10) -------------------------------------------------


@pytest.mark.parametrize("quiet_s", [1.0, 2.5, 5.0, 7.5, 10.0])
@pytest.mark.parametrize("publishing_s", [0.05, 0.25, 1.0])
def test_a_keep_alive_never_moves_a_change_that_is_still_on_its_way(quiet_s: float, publishing_s: float) -> None:
    # Case 1: after a quiet spell the session asks the server's time; a change stamped before that answer, still
    # in the next publish response, keeps its own time.
    t = watching()
    t.tool(1, at(10))
    t.spindle(True, 3000.0, at(11))
    t.seen(at(11 + quiet_s + publishing_s))  # the keep-alive's answer
    t.spindle(False, 0.0, at(11 + quiet_s))  # stamped before it, delivered after it
    t.seen(at(11 + 2 * quiet_s + publishing_s))
    events = t.tool(2, at(11 + 2 * quiet_s))
    done = closed(events)
    assert done.end == at(11 + 2 * quiet_s) and events[1].start == at(11 + 2 * quiet_s)
    assert done.metrics["spindle_runtime_s"] == round(quiet_s, 3)
    assert done.metrics["time_in_spindle_s"] == round(1 + 2 * quiet_s, 3) and "x-clamped" not in done.metrics


def test_a_change_stamped_before_the_last_change_is_placed_after_it_and_counted() -> None:
    t = watching()
    t.tool(1, at(10))
    t.program("O1", at(12))
    t.spindle(True, 3000.0, at(11))  # the controller stamped it before a change already applied
    t.program("O1", at(11.5))  # no transition: nothing to count
    done = closed(t.tool(0, at(20)))
    assert done.metrics["spindle_runtime_s"] == 8.0 and done.metrics["x-clamped"] == 1


def test_a_connection_loss_keeps_the_spindle_time_seen_before_it_and_counts_the_outage_from_the_loss() -> None:
    # Case 2: the spindle turned from 12 s; the connection was known live up to 15.2 s and lost there; the
    # controller came back, its spindle turning since 20 s (its own stamp); the session reconnected at 22.5 s.
    t = watching()
    t.tool(1, at(10))
    t.spindle(True, 5000.0, at(12))
    t.seen(at(15.2))
    assert t.reconnected(1, True, 5000.0, at(22.5), tool_at=at(20), rotating_at=at(20)) == []
    t.spindle(False, 0.0, at(25))
    done = closed(t.tool(0, at(30)))
    assert done.metrics["spindle_runtime_s"] == 8.2  # 12 -> 15.2 and 20 -> 25
    assert done.metrics["x-outage_s"] == 7.3 and done.metrics["interrupted"] is True
    assert (done.start, done.end) == (at(10), at(30)) and "x-clamped" not in done.metrics


def test_a_spindle_the_controller_says_never_stopped_is_credited_through_the_gap() -> None:
    # umati after a link cut: IsRotating unchanged since 12 s (its stamp lies before the gap).
    t = watching()
    t.tool(1, at(10))
    t.spindle(True, None, at(12))
    t.seen(at(15))
    t.reconnected(1, True, None, at(20), rotating_at=at(12))
    done = closed(t.tool(0, at(30)))
    assert done.metrics["spindle_runtime_s"] == 18.0 and done.metrics["x-outage_s"] == 5.0
    assert "max_speed_rpm" not in done.metrics


def test_a_spindle_stopped_during_the_gap_is_credited_only_up_to_the_gap() -> None:
    t = watching()
    t.tool(1, at(10))
    t.spindle(True, 5000.0, at(12))
    t.seen(at(15))
    t.reconnected(1, False, 0.0, at(20), rotating_at=at(17))  # it stopped at 17; between 15 and 17 unknown
    done = closed(t.tool(0, at(30)))
    assert done.metrics["spindle_runtime_s"] == 3.0


def test_an_agent_killed_mid_usage_keeps_what_it_saved_and_the_next_tool_starts_at_the_controllers_stamp() -> None:
    # Case 3: the agent saved its state at 15.2 s (T1 in since 10 s, spindle on since 12 s) and was killed; T1
    # left and T2 came at 18.4 s (ToolId's SourceTimestamp); the agent came back at 30 s.
    t = watching()
    first = opened(t.tool(1, at(10)))
    t.spindle(True, 5000.0, at(12))
    t.seen(at(15.2))
    saved = json.loads(json.dumps(t.state.to_json()))
    restarted = Tracker("M1", TrackerState.from_json(saved))
    events = restarted.reconnected(2, True, 5000.0, at(30), tool_at=at(18.4), rotating_at=at(12))
    old, new = closed(events), events[1]
    assert (old.usage_id, old.end) == (first.usage_id, at(15.2))
    assert old.metrics["spindle_runtime_s"] == 3.2 and old.metrics["time_in_spindle_s"] == 5.2
    assert old.metrics["interrupted"] is True
    assert isinstance(new, UsageOpened) and (new.tool_number, new.start, new.interrupted) == (2, at(18.4), False)
    done = closed(restarted.tool(0, at(40)))
    # The spindle never stopped (its stamp is before the gap): T2 turned from its start.
    assert done.metrics["spindle_runtime_s"] == 21.6 and "interrupted" not in done.metrics


def test_an_agent_killed_mid_spindle_credits_the_whole_run_when_the_controller_shows_it_never_stopped() -> None:
    t = watching()
    t.tool(1, at(10))
    t.spindle(True, 5000.0, at(12))
    t.seen(at(15.2))
    restarted = Tracker("M1", TrackerState.from_json(json.loads(json.dumps(t.state.to_json()))))
    assert restarted.reconnected(1, True, 5000.0, at(30), tool_at=at(10), rotating_at=at(12)) == []
    restarted.spindle(False, 0.0, at(33))
    done = closed(restarted.tool(0, at(35)))
    assert done.metrics["spindle_runtime_s"] == 21.0 and done.metrics["x-outage_s"] == 14.8


def test_the_first_contact_starts_the_usage_at_the_controllers_stamps() -> None:
    # Case 4: T4 went in at -7 s and the spindle started at -3.5 s (controller stamps); the agent looked at 0 s.
    t = Tracker("M1")
    first = opened(t.reconnected(4, True, 3000.0, at(0), tool_at=at(-7), rotating_at=at(-3.5), program="O7"))
    assert (first.start, first.interrupted, first.program) == (at(-7), False, "O7")
    done = closed(t.tool(0, at(10)))
    assert done.metrics["time_in_spindle_s"] == 17.0 and done.metrics["spindle_runtime_s"] == 13.5
    assert "interrupted" not in done.metrics and "x-clamped" not in done.metrics


def test_stamps_in_the_future_or_before_the_gap_are_clamped_to_the_reconnect_and_marked() -> None:
    t = Tracker("M1")
    first = opened(t.reconnected(4, True, 3000.0, at(0), tool_at=at(3600), rotating_at=at(-5)))
    assert (first.start, first.interrupted) == (at(0), True)
    done = closed(t.tool(0, at(10)))
    assert done.metrics["spindle_runtime_s"] == 10.0 and done.metrics["x-clamped"] == 1
    within_skew = Tracker("M1")
    assert opened(within_skew.reconnected(4, False, None, at(0), tool_at=at(1))).start == at(0)
    # A tool found in whose stamp lies before what the agent last saw (when the spindle was empty).
    t = watching()
    t.seen(at(20))
    late = opened(t.reconnected(5, False, None, at(30), tool_at=at(15)))
    assert (late.start, late.interrupted) == (at(30), True)
    assert closed(t.tool(0, at(40))).metrics["x-clamped"] == 1


@pytest.mark.parametrize("program_first", [True, False])
def test_a_program_changed_at_the_instant_of_a_tool_change_belongs_to_the_new_tool(program_first: bool) -> None:
    # Case 5: T12 -> T3 and O1001 -> O1002 stamped at the same instant, their notifications in either order.
    t = watching()
    t.program("O1001", at(5))
    t.tool(12, at(10))
    t.program("O1005", at(12))
    t.program("O1001", at(13))
    if program_first:
        t.program("O1002", at(20))
        events = t.tool(3, at(20))
    else:
        events = t.tool(3, at(20))
        t.program("O1002", at(20))
    old = closed(events)
    assert old.metrics["programs"] == ["O1001", "O1005"] and old.program == "O1001"
    t.program("O1003", at(25))
    new = closed(t.tool(0, at(30)))
    assert new.metrics["programs"] == ["O1002", "O1003"] and new.program == "O1002"


def test_a_program_seen_earlier_in_the_stay_stays_with_it_at_a_tool_change() -> None:
    t = watching()
    t.tool(12, at(10))
    t.program("O1", at(11))
    t.program("O2", at(12))
    t.program("O1", at(20))  # seen before: not added at 20
    assert closed(t.tool(3, at(20))).metrics["programs"] == ["O1", "O2"]
