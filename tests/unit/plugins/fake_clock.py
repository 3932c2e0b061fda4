"""A clock for wait loops in unit tests: sleeping advances it at once."""
from __future__ import annotations


class FakeClock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
