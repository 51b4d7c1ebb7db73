"""The `azure` platform: PostgreSQL flexible server, Blob Storage, Azure Container Apps.

    platform.py  AzurePlatform, the component: shared resources (resource group, network, private
                 DNS, identities, registry, Container Apps environment) and what the components ask
                 for (database, container, images, apps)

Imports only pulumi_azure_native (plus pulumi_docker to build and push images, pulumi_command for the
registry token), so `local` never loads it.
"""

from components.platforms.azure.platform import AzurePlatform

__all__ = ["AzurePlatform"]
