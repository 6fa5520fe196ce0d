"""The pipeline's plain, typed functions; Celery tasks in ``tasks/`` are thin wrappers."""
