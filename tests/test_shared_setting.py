"""Process-wide settings held by blocks (`shared_setting`): the switch interval is shortened
only while a quick_handoff block runs and the cycle collector is off only while a paused_gc
block runs, each set back once the last of several (nested or concurrent) blocks ends."""

from __future__ import annotations

import gc
import sys
import threading

from scheduler.gc_pause import paused_gc
from scheduler.thread_handoff import QUICK, quick_handoff


def test_the_interval_is_short_inside_and_restored_after_the_last_block() -> None:
    before = sys.getswitchinterval()
    assert before > QUICK
    inner_entered, outer_done = threading.Event(), threading.Event()
    seen: list[float] = []

    def other() -> None:
        with quick_handoff():
            inner_entered.set()
            outer_done.wait(5)
            seen.append(sys.getswitchinterval())  # the first block ended; this one runs on

    with quick_handoff():
        assert sys.getswitchinterval() == QUICK
        with quick_handoff():  # nested
            assert sys.getswitchinterval() == QUICK
        assert sys.getswitchinterval() == QUICK
        thread = threading.Thread(target=other)
        thread.start()
        assert inner_entered.wait(5)
    outer_done.set()
    thread.join(5)
    assert seen == [QUICK]
    assert sys.getswitchinterval() == before


def test_a_shorter_interval_set_before_is_kept() -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(QUICK / 5)
    shorter = sys.getswitchinterval()  # as the interpreter keeps it (whole microseconds)
    try:
        with quick_handoff():
            assert sys.getswitchinterval() == shorter
        assert sys.getswitchinterval() == shorter
    finally:
        sys.setswitchinterval(before)


def test_the_collector_comes_back_only_if_it_was_on() -> None:
    assert gc.isenabled()
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # off before the first: left off
    finally:
        gc.enable()
