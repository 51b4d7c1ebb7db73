import importlib
import os
import sys
import sqlalchemy
migrations = importlib.import_module(sys.argv[1])
uri = os.environ['MLFLOW_AUTH_DATABASE_URI']
engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
with engine.connect() as lock:
    lock.execute(sqlalchemy.text('SELECT pg_advisory_lock(120312342277985)'))
    lock.commit()
    migrations.migrate_if_needed(engine, 'head')
    admin = os.environ.get('MLFLOW_AUTH_ADMIN_USERNAME')
    if admin:
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore
        store = SqlAlchemyStore()
        store.init_db(uri)
        password = os.environ['MLFLOW_AUTH_ADMIN_PASSWORD']
        if store.has_user(admin, use_primary=True):
            store.update_user(admin, password=password, is_admin=True)
        else:
            store.create_user(admin, password, is_admin=True)
        store.engine.dispose()
        print(f'administrator {admin} has the deployed password')
print('auth database at head')
