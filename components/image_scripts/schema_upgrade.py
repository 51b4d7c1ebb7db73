import os
import sqlalchemy
from mlflow.db import commands
uri = os.environ['MLFLOW_BACKEND_STORE_URI']
engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
with engine.connect() as lock:
    if engine.dialect.name == 'postgresql':
        lock.execute(sqlalchemy.text('SELECT pg_advisory_lock(120312342278007)'))
        lock.commit()
    commands.main(['upgrade', uri], prog_name='mlflow db')
