"""One router per resource: predictions, models, usage, admin, health."""
