"""Names and character sets that several modules must spell alike (issue 24).

A service is reached by its name (the Docker network alias on `local`, ECS Service Connect on `aws`,
Container Apps' internal DNS on `azure`), so the server's name in the proxy's upstream, the
platform's service, the ops tools' container lookup and the rehearsal's stand-ins must be one string.
"""

SERVER_SERVICE = "mlflow-server"
"""The MLflow server's service: its host name in the stack's network (the proxy's upstream), the ECS
task family one-off jobs reuse, the Container App that carries the version it runs."""

PROXY_SERVICE = "mlflow-proxy"
"""The reverse proxy's service (on `azure` its default host name is `<this>.<environment domain>`)."""

SERVER_IMAGE = "mlflow-server"
"""The repository name of the server's image (the local tag, the ECR and ACR repositories)."""

URI_PASSWORD_SPECIALS = "@:/?#%&+!*-_"
"""The special characters of generated passwords (pulumi-random's override_special) wherever a
platform accepts them: every URL-reserved character that could break a URI, so that a missing
quoting shows at once. RDS refuses some (aws/platform.py keeps its own set)."""
