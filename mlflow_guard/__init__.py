"""The request guard the server image runs in front of MLflow's auth apps (issue 29): canonical
experiment ids only (ids.py), the internal listener's Prometheus scrape (asgi.py), and the checks the
project adds after the auth app's own (hooks.py). Wired in by app.py under MLflow's app names."""
