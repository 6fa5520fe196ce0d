"""Configuration: settings (env prefix ``RSN_``), Celery configuration and default rules."""
