"""The MLflow platform program: validate the stack config, create one MlflowTrackingServer, export its outputs."""

import pulumi

from components import MlflowTrackingServer
from components.stack import load_stack_args

# Named "mlflow": physical names start with mlflow-<stack>, as they did before the component existed,
# and the resources of such stacks move under it instead of being replaced.
mlflow = MlflowTrackingServer("mlflow", load_stack_args(), moved_from_top_level=True)
for name, value in mlflow.outputs().items():
    pulumi.export(name, value)
