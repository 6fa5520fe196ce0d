"""return-notify: return status notifications for e-commerce reverse logistics."""

__version__ = "0.1.0"
