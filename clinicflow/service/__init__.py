"""The data-processing HTTP service (``clinicflow serve``): FastAPI app, live updates, results page.

Sits on top of :mod:`clinicflow.processing` (plain logic) and talks to
Prefect (deployment runs, cancellation); see :func:`clinicflow.service.app.create_app`.
"""
