"""The simulated host sysfs of tests/unit/plugins/conftest.py, for the EDA event source's tests."""
from __future__ import annotations

from ansible_collections.kvm.hotplug.tests.unit.plugins.conftest import simsysfs  # noqa: F401  pylint: disable=unused-import
