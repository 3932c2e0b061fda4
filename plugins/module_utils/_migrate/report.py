# -*- coding: utf-8 -*-
# Copyright: kvm.hotplug contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_migrate's result: checks, flags, both hosts before and after, timings, transferred data and the job.

Pure: built from what the run read and did; documented in the module's RETURN.

Private to the kvm.hotplug collection; not a public API.
"""

from __future__ import annotations

from ansible_collections.kvm.hotplug.plugins.module_utils._migrate.apply import migration_flags

# The completed job's statistics the result keeps (libvirt's virDomainGetJobStats names).
JOB_FIELDS = ('type', 'operation', 'time_elapsed', 'downtime', 'setup_time', 'data_total', 'data_processed',
              'data_remaining', 'memory_total', 'memory_processed', 'memory_remaining', 'memory_bps',
              'memory_dirty_rate', 'memory_iteration', 'memory_postcopy_requests', 'auto_converge_throttle')


def build_result(run, state, plan, changed, outcome, after, attempt=None, job=None, verify=None):
    """The module's result; `attempt` and what follows it only once the migration was called."""
    result = dict(
        changed=changed, outcome=outcome, checks=plan.checks, notes=list(plan.notes),
        flags=migration_flags(run.request)[1], before=state.before, after=after,
        timings=dict(total_s=round(run.elapsed(), 2),
                     migration_s=None if attempt is None else round(attempt.seconds, 2),
                     # a running job's "downtime" is QEMU's expectation; only a completed one's is measured
                     downtime_ms=(job or {}).get('downtime') if attempt is not None and attempt.ok else None,
                     job_elapsed_ms=(job or {}).get('time_elapsed')),
        transferred=_transferred(job),
    )
    if attempt is not None:
        result.update(attempt=attempt.to_dict(), job=_job_report(job), verify=verify, metadata=state.metadata,
                      max_downtime_set_ms=state.downtime_set_ms)
    return result


def _transferred(job):
    if not job:
        return dict(data_total_bytes=None, data_processed_bytes=None, memory_processed_bytes=None,
                    memory_bps=None, memory_iterations=None)
    return dict(data_total_bytes=job.get('data_total'), data_processed_bytes=job.get('data_processed'),
                memory_processed_bytes=job.get('memory_processed'), memory_bps=job.get('memory_bps'),
                memory_iterations=job.get('memory_iteration'))


def _job_report(job):
    if not job:
        return None
    return {key: job[key] for key in JOB_FIELDS if key in job}
