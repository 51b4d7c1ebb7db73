"""The Azure CLI login the program's `az` commands use, made fresh before each when the deployment asks.

In deploy.yml's `apply`, `azure/login` signs the CLI in once with the job's GitHub OIDC token. The CLI
keeps that assertion (it lasts minutes) and cannot renew its access token from it when the token
lapses, after about an hour (Azure/azure-cli#28708); an `up` runs for up to two hours, and the
program's `az` commands (the on-demand backup before an upgrade, the registry token for the pushes)
can come late in it. So each such command starts with FRESH_AZ_LOGIN. It is opt-in: only with
MLFLOW_FRESH_AZ_LOGIN=1 in the command's environment (deploy.yml sets it in `apply`'s `up` step alone)
does it ask GitHub for a new OIDC token for Entra ID (ACTIONS_ID_TOKEN_REQUEST_URL and
ACTIONS_ID_TOKEN_REQUEST_TOKEN, which GitHub sets in a job with `id-token: write`) and sign the CLI in
again with it as AZURE_CLIENT_ID in AZURE_TENANT_ID (AZURE_SUBSCRIPTION_ID, if set, chosen after);
with the opt-in but any of those four missing, the command fails with the names of the missing ones.
Without the opt-in (unset, empty or 0) it does nothing, whatever else is set: a workstation, the tests,
and any other program using the component, whose CI may well hold AZURE_CLIENT_ID, AZURE_TENANT_ID and
an OIDC token for a login of its own, keep the login they have. Any other value fails the command.

It prints nothing on stdout (the registry token command's stdout is the token) and never the token:
the request's bearer token goes to curl on its stdin (`-H @-`), not on its command line; the OIDC
token is in a shell variable and, as `az login --federated-token` takes no other form, on az's
command line, which no log shows (what Pulumi says of a failed command is its script, unexpanded,
and its output). `az login`'s output is kept back and shown only when it fails. A failure of any
step fails the command with what failed. The logins of concurrent commands take turns (flock on a
file in the CLI's configuration directory, held for the command): two `az login`s rewriting the
CLI's profile beside a command reading it could break either.
"""

AUDIENCE = "api://AzureADTokenExchange"
"""The audience Entra ID expects of a GitHub OIDC token (what azure/login asks for), URL-encoded below."""

OPT_IN = "MLFLOW_FRESH_AZ_LOGIN"
"""The variable that asks for the fresh login (`1`); deploy.yml sets it in `apply`'s `up` step alone."""

FRESH_AZ_LOGIN = """\
if [ "${MLFLOW_FRESH_AZ_LOGIN:-}" = 1 ]; then
  mlflow_missing=""
  [ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] || mlflow_missing="$mlflow_missing ACTIONS_ID_TOKEN_REQUEST_URL"
  [ -n "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-}" ] || mlflow_missing="$mlflow_missing ACTIONS_ID_TOKEN_REQUEST_TOKEN"
  [ -n "${AZURE_CLIENT_ID:-}" ] || mlflow_missing="$mlflow_missing AZURE_CLIENT_ID"
  [ -n "${AZURE_TENANT_ID:-}" ] || mlflow_missing="$mlflow_missing AZURE_TENANT_ID"
  [ -z "$mlflow_missing" ] \\
    || { echo "fresh Azure CLI login: MLFLOW_FRESH_AZ_LOGIN=1, but not set:$mlflow_missing: nothing run" >&2; exit 1; }
  mlflow_az_dir="${AZURE_CONFIG_DIR:-$HOME/.azure}"
  if command -v flock >/dev/null 2>&1; then
    mkdir -p "$mlflow_az_dir" && exec 9>"$mlflow_az_dir/mlflow-fresh-login.lock" && flock 9 \\
      || { echo "fresh Azure CLI login: cannot lock $mlflow_az_dir/mlflow-fresh-login.lock" >&2; exit 1; }
  fi
  mlflow_oidc="$(printf 'Authorization: bearer %s\\n' "$ACTIONS_ID_TOKEN_REQUEST_TOKEN" \\
    | curl --silent --show-error --fail --retry 3 --max-time 60 --header @- \\
      "${ACTIONS_ID_TOKEN_REQUEST_URL}&audience=api%3A%2F%2FAzureADTokenExchange")" \\
    || { echo "fresh Azure CLI login: GitHub's OIDC token endpoint gave no token: nothing run" >&2; exit 1; }
  mlflow_oidc="$(printf '%s' "$mlflow_oidc" | sed -n 's/.*"value"[[:space:]]*:[[:space:]]*"\\([^"]*\\)".*/\\1/p')"
  [ -n "$mlflow_oidc" ] \\
    || { echo "fresh Azure CLI login: GitHub's OIDC token endpoint answered without a token: nothing run" >&2; exit 1; }
  mlflow_az_said="$(az login --service-principal --username "$AZURE_CLIENT_ID" --tenant "$AZURE_TENANT_ID" \\
    --federated-token "$mlflow_oidc" --output none 2>&1 >/dev/null)" \\
    || { echo "fresh Azure CLI login: az login as $AZURE_CLIENT_ID failed: nothing run. $mlflow_az_said" >&2; exit 1; }
  if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
    mlflow_az_said="$(az account set --subscription "$AZURE_SUBSCRIPTION_ID" --output none 2>&1 >/dev/null)" \\
      || { echo "fresh Azure CLI login: az account set failed: nothing run. $mlflow_az_said" >&2; exit 1; }
  fi
  unset mlflow_oidc mlflow_az_said mlflow_az_dir mlflow_missing
elif [ -n "${MLFLOW_FRESH_AZ_LOGIN:-}" ] && [ "$MLFLOW_FRESH_AZ_LOGIN" != 0 ]; then
  echo "fresh Azure CLI login: MLFLOW_FRESH_AZ_LOGIN is $MLFLOW_FRESH_AZ_LOGIN, not 1, 0 or unset: nothing run" >&2
  exit 1
fi
"""
"""POSIX sh (pulumi-command runs a command with `/bin/sh -c`), run before an `az` command."""


def with_fresh_az_login(script: str) -> str:
    """`script` (a shell command that runs `az`) after FRESH_AZ_LOGIN: the one prelude of every such command."""
    return FRESH_AZ_LOGIN + script
