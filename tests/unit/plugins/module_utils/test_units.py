from __future__ import annotations

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._common.units import (
    format_kib, kib_to_mib, parse_size_kib, xml_size_kib,
)


@pytest.mark.parametrize('value, kib', [
    (512, 512 * 1024),
    ('512', 512 * 1024),
    ('1536MiB', 1536 * 1024),
    ('1536 MiB', 1536 * 1024),
    ('2GiB', 2 * 1024 * 1024),
    ('2G', 2 * 1024 * 1024),
    ('2g', 2 * 1024 * 1024),
    ('1.5GiB', 1536 * 1024),
    ('131072KiB', 131072),
    ('2GB', 1953125),  # decimal units are accepted when they make whole KiB
])
def test_parse_size_kib(value, kib):
    assert parse_size_kib(value) == kib


def test_parse_size_kib_refuses_fractions_of_a_kib():
    with pytest.raises(ValueError, match='whole number of KiB'):
        parse_size_kib('1GB')  # 10**9 bytes is 976562.5 KiB


@pytest.mark.parametrize('value', ['', 'lots', '12XB', '-5MiB', True, '1,5GiB'])
def test_parse_size_kib_rejects(value):
    with pytest.raises(ValueError):
        parse_size_kib(value)


def test_xml_size_kib_units():
    assert xml_size_kib('4', 'GiB') == 4 * 1024 * 1024
    assert xml_size_kib('262144', 'KiB') == 262144
    assert xml_size_kib('262144', None) == 262144
    assert xml_size_kib('1048576', 'b') == 1024


def test_kib_to_mib_and_format():
    assert kib_to_mib(None) is None
    assert kib_to_mib(2048) == 2
    assert kib_to_mib(1536) == 1.5
    assert format_kib(2 * 1024 * 1024) == '2 GiB'
    assert format_kib(1536 * 1024) == '1536 MiB'
    assert format_kib(100) == '100 KiB'
