"""The policy pack the Pulumi CLI starts (`pulumi preview --policy-pack policy`).

Only builds the pack: `PolicyPack(...)` starts the analyzer's gRPC server and never returns, so the
policies live in `policies.py`, where tests import them without a server.

Two additions to pulumi_policy's analyzer, both in its `Configure` (the CLI sends every name of the
`--policy-pack-config` file, each with its enforcement level, `"all"` spread over every policy):
- it stores a configuration for any policy name and never reads the ones that name no policy, so a
  typo (`stateful-resource-protected`) would keep the policy it meant at its defaults without a word;
- it honours any enforcement level, so one line (`"iam-least-privilege": "advisory"`, `"all":
  "disabled"`) would switch the pack's promises off.
The pack refuses such a call instead (`unknown_policy_names`, `refused_enforcement_levels`), and the
CLI stops the run ("configuring policy pack ...: ..."). The one level it takes besides mandatory is the
documented teardown exception, `stateful-resources-protected` disabled (the same as its
`requireProtection: false`).
"""

import sys
from pathlib import Path

# The pack's own modules, however the CLI starts it (`python -u policy` or `python policy/__main__.py`).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402
from pulumi.runtime.proto import analyzer_pb2  # noqa: E402
from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402
from pulumi_policy import policy as _analyzer  # noqa: E402

from policies import (  # noqa: E402
    PACK_DESCRIPTION,
    PACK_NAME,
    POLICIES,
    refused_enforcement_levels,
    unknown_policy_names,
)

_configure = _analyzer._PolicyAnalyzerServicer.Configure  # pulumi-policy 1.21.0 (pinned in requirements.txt)


def _configure_known_policies_only(servicer, request, context):
    unknown = unknown_policy_names(request.policyConfig)
    if unknown:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"the policy pack configuration names {', '.join(unknown)}: no policy of this pack is called so "
                      f"(it has {', '.join(policy.name for policy in POLICIES)}, and \"all\" for every one)")
    levels = {name: analyzer_pb2.EnforcementLevel.Name(config.enforcementLevel).lower()
              for name, config in request.policyConfig.items()}
    refused = refused_enforcement_levels(levels)
    if refused:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"the policy pack configuration sets {'; '.join(refused)}: every policy of this pack is "
                      "mandatory (the one exception: \"stateful-resources-protected\": \"disabled\" for a teardown, "
                      "the same as its requireProtection: false)")
    return _configure(servicer, request, context)


_analyzer._PolicyAnalyzerServicer.Configure = _configure_known_policies_only

PolicyPack(
    name=PACK_NAME,
    description=PACK_DESCRIPTION,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
