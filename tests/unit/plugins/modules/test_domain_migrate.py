"""domain_migrate's main() on libvirt's own test driver (test:///default, which has a running domain "test").

The driver cannot migrate; these are refusals that happen before anything moves, through the whole module.
"""
from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.modules import domain_migrate
from ansible_collections.kvm.hotplug.tests.unit.plugins.module_runner import run_main


def test_unreachable_destination_is_a_one_line_refusal(capsys):
    result, failed = run_main(domain_migrate.main, dict(name='test', uri='test:///default',
                                                        dest_uri='qemu+tcp://127.0.0.1:1/system'), capsys)
    assert failed and result['outcome'] is None and not result['changed']
    assert result['msg'].startswith('refusing to migrate domain test to qemu+tcp://127.0.0.1:1/system: the destination '
                                    'is unreachable (cannot connect to libvirt at qemu+tcp://127.0.0.1:1/system')
    assert result['msg'].endswith('nothing was moved') and '\n' not in result['msg']
    assert result['checks']['destination']['ok'] is False


def test_running_on_both_sides_is_refused_with_the_checks(capsys):
    result, failed = run_main(domain_migrate.main, dict(name='test', uri='test:///default',
                                                        dest_uri='test:///default'), capsys)
    assert failed and 'domain test is running on the destination too' in result['msg']
    assert result['checks']['name_uuid']['ok'] is False
    assert result['checks']['state']['ok'] is True and result['checks']['job']['ok'] is True
    assert result['before']['source']['state'] == 'running'


def test_positive_numbers_only(capsys):
    result, failed = run_main(domain_migrate.main, dict(name='test', uri='test:///default',
                                                        dest_uri='test:///default', bandwidth=0), capsys)
    assert failed and result['msg'] == 'bandwidth must be at least 1, got 0'
