from __future__ import annotations

import pytest

from ansible_collections.kvm.hotplug.plugins.module_utils._common.cpulist import (
    format_cpulist, normalize_id_list, parse_cpulist,
)


@pytest.mark.parametrize('text, expected', [
    ('', ()),
    (None, ()),
    ('0', (0,)),
    ('0-3', (0, 1, 2, 3)),
    ('0-3,8', (0, 1, 2, 3, 8)),
    (' 5 , 1-2 ', (1, 2, 5)),
    ('0-7,^2', (0, 1, 3, 4, 5, 6, 7)),
    ('0-3,^0-1', (2, 3)),
    ('3,3,1', (1, 3)),
])
def test_parse_cpulist(text, expected):
    assert parse_cpulist(text) == expected


@pytest.mark.parametrize('text', ['a', '1-', '-1', '3-1', '../cpu0', '1;2', '1.5', '^'])
def test_parse_cpulist_rejects_bad_items(text):
    with pytest.raises(ValueError):
        parse_cpulist(text)


def test_parse_cpulist_without_exclusion_rejects_caret():
    with pytest.raises(ValueError):
        parse_cpulist('0-3,^1', allow_exclusion=False)


@pytest.mark.parametrize('ids, expected', [
    ([], ''),
    ([3], '3'),
    ([0, 1, 2, 3, 5], '0-3,5'),
    ({7, 5, 6, 1}, '1,5-7'),
    ((0, 2, 4), '0,2,4'),
])
def test_format_cpulist(ids, expected):
    assert format_cpulist(ids) == expected


@pytest.mark.parametrize('text', ['0-3,8', '1', '0,2,4-6'])
def test_round_trip(text):
    assert format_cpulist(parse_cpulist(text)) == text


@pytest.mark.parametrize('value, expected', [
    (None, ()),
    ([1, 3], (1, 3)),
    ('2-5,8', (2, 3, 4, 5, 8)),
    (['2-3', 7], (2, 3, 7)),
    (4, (4,)),
])
def test_normalize_id_list(value, expected):
    assert normalize_id_list(value) == expected


@pytest.mark.parametrize('value', [['cpu1'], ['../../x'], [-1], [True], '1,a', ['0-3,^1']])
def test_normalize_id_list_refuses_non_numbers(value):
    with pytest.raises(ValueError):
        normalize_id_list(value, what='CPU')
