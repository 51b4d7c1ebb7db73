"""Hosts MlflowTrackingServer as a Pulumi package for programs in any Pulumi language.

`pulumi package add <this repository>/provider` (a local path or a Git URL) runs this program to
read the package schema and, at `pulumi up`, to construct the component. The component lives in
the repository's `components/` (and builds the image from `docker/`), one level up.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi.provider.experimental import component_provider_host  # noqa: E402

from components.mlflow_tracking_server import MlflowTrackingServer  # noqa: E402
from components.package import PACKAGE_NAME, PACKAGE_VERSION  # noqa: E402

if __name__ == "__main__":
    component_provider_host([MlflowTrackingServer], name=PACKAGE_NAME, version=PACKAGE_VERSION)
