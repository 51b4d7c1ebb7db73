"""What each platform runs, for the platform-faithful rehearsal (rehearsal.platform_run).

A platform's registry entry (components.platforms.PlatformPlugin.rehearsal_runtime) names a module
with:

* `ARTIFACT_STAND_IN`: "s3" (moto) or "azurite", what stands in for its artifact store;
* `services(run) -> dict[str, PlatformService]`: from the recorded graph (tests.harness.program's run),
  each service's containers as the platform hands them to its runtime: command, env, secret env
  values, the user it runs them as, init containers in order, probes and ports;
* `database(run, services) -> StandInDatabase`: the managed PostgreSQL its stand-in must be;
* optionally `stack_config() -> dict[str, str]`: the stack's config (full keys), where the project has no
  `Pulumi.<name>.yaml` for it (a platform kept in another package).

The types are rehearsal.platform_graph's. Each module cites the platform's documentation for how
it runs what it is given: that is what the rehearsal reproduces.
"""
