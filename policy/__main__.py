"""The policy pack the Pulumi CLI starts (`pulumi preview --policy-pack policy`).

Only builds the pack: `PolicyPack(...)` starts the analyzer's gRPC server and never returns, so the
policies live in `policies.py`, where tests import them without a server.
"""

import sys
from pathlib import Path

# The pack's own modules, however the CLI starts it (`python -u policy` or `python policy/__main__.py`).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies import PACK_DESCRIPTION, PACK_NAME, POLICIES  # noqa: E402

PolicyPack(
    name=PACK_NAME,
    description=PACK_DESCRIPTION,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
