"""The API's endpoints, one router per concern; :func:`clinicflow.service.app.create_app` includes them.

- :mod:`.health`: ``GET /health`` (open) and ``GET /`` (to the results page);
- :mod:`.files`: ``/api/etl/files`` (upload or register, list, preview);
- :mod:`.requests`: ``/api/etl/processors`` and ``POST /api/etl/process``;
- :mod:`.results`: ``/api/etl/results`` (list, read, export, delete);
- :mod:`.series`: ``/api/etl/results/{id}/series`` (the chart's data);
- :mod:`.ws`: the WebSocket ``/ws`` of live updates.

Shared objects come from :data:`clinicflow.service.state.Service`, the token check from
:data:`clinicflow.service.auth.AUTH`.
"""
