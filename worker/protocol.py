"""The message between the node's dispatcher and its workers: one task name, and a task id per
attempt, so the node can revoke an attempt's message and the worker can tell which it is."""

RUN_JOB_TASK = "worker.run_job"


def run_job_task_id(job_id: int, attempt: int) -> str:
    return f"job-{job_id}-attempt-{attempt}"
