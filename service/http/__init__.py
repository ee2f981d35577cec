"""The HTTP layer: the Flask app factory (``app.create_app``), its routes, admin, observability, the reloader, and
the production server's files (``wsgi``, ``gunicorn_conf``). Importing this package imports nothing, so that
``schemas`` serves the MCP server without Flask."""
