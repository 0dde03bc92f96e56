"""ShedWindow: the surge options apply from a shed until hold_s after the last one (or always), and the GIL switch
interval follows them."""
from __future__ import annotations

import sys

import pytest

from serving.shed_window import ShedWindow


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def restore_switch():
    before = sys.getswitchinterval()
    yield before
    sys.setswitchinterval(before)


def test_on_from_a_shed_until_hold_s_after_the_last(restore_switch):
    clock = Clock()
    w = ShedWindow(switch_interval_ms=0.5, hold_s=2.0, clock=clock)
    assert not w() and sys.getswitchinterval() == restore_switch
    w.shed()
    assert w() and sys.getswitchinterval() == pytest.approx(0.0005)
    clock.t += 1.5
    w.shed()  # a later shed extends the window
    clock.t += 1.5
    assert w()
    clock.t += 1.0
    assert not w() and sys.getswitchinterval() == restore_switch


def test_always_on_and_no_switch_interval_leaves_the_interpreters(restore_switch):
    clock = Clock()
    always = ShedWindow(always=True, switch_interval_ms=1.0, clock=clock)
    clock.t += 1e6
    assert always() and sys.getswitchinterval() == pytest.approx(0.001)
    sys.setswitchinterval(restore_switch)
    plain = ShedWindow(clock=clock)
    plain.shed()
    assert plain() and sys.getswitchinterval() == restore_switch
