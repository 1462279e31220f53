"""Runs on more than one machine through Dagster's own engine: dagster-celery's run launcher.

Every run is one Celery task, executed whole (in-process executor) by a worker; Redis is the broker and the
result backend. Nothing here schedules: the daemon's run queue decides what runs, Celery decides where.

    settings.py      the cluster's variables (broker, backend, queue), validated
    code_version.py  what version of the pipeline a process runs, so a worker refuses a run of another one
    launcher.py      VaultCeleryRunLauncher: tags each run with the daemon's code version; tells a dead worker
    worker.py        the Celery app a worker runs (`vault-pipeline worker`): execute_job with the version check
    inspect.py       the workers and what each runs (`vault-pipeline status`, the launcher's health check)
"""
