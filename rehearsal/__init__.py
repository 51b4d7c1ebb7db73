"""The data-plane rehearsal: run exactly what the components render, natively, with real servers.

`rehearsal.launcher.RehearsalStack` starts PostgreSQL (its own initdb cluster), an S3 stand-in
(moto's server mode), the schema-upgrade step and the MLflow server from the `TrackingServer`
component's rendered command and env, and Nginx from the `ReverseProxy` component's rendered
nginx.conf and htpasswd. Used by `tests/rehearsal/`, `scripts/rehearse` and `bench/`.
`rehearsal.postgres.PostgresCluster` (a private initdb cluster) also serves the integration and
migration tests and the migration benchmark.
"""
