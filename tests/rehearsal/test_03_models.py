"""Log a small pyfunc model through the proxy, load it back, register it, set an alias."""

from __future__ import annotations

import uuid

import mlflow
import pandas as pd


class AddN(mlflow.pyfunc.PythonModel):
    def __init__(self, n: int):
        self.n = n

    def predict(self, context, model_input, params=None):
        return model_input + self.n


def test_pyfunc_model_logs_loads_registers_and_takes_an_alias(default_variant, client_for):
    name = f"rehearsal-model-{uuid.uuid4().hex[:8]}"
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with client_for(default_variant) as client:
        mlflow.set_experiment(f"models-{uuid.uuid4().hex[:8]}")
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(name="model", python_model=AddN(5),
                                           pip_requirements=[f"mlflow=={mlflow.__version__}", "pandas"])
        # The model's files went through the proxied artifact routes into the bucket and back.
        loaded = mlflow.pyfunc.load_model(info.model_uri)
        assert loaded.predict(frame)["x"].tolist() == [6.0, 7.0, 8.0]

        version = mlflow.register_model(info.model_uri, name)
        assert version.version == "1"
        client.set_registered_model_alias(name, "champion", version.version)
        by_alias = client.get_model_version_by_alias(name, "champion")
        assert by_alias.version == "1" and by_alias.run_id == run.info.run_id
        assert client.get_registered_model(name).aliases == {"champion": "1"}

        champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        assert champion.predict(frame)["x"].tolist() == [6.0, 7.0, 8.0]
