import os
import psycopg
from psycopg import sql
env = os.environ
role, database = env['MLFLOW_DB_USER'], env['MLFLOW_DB_NAME']
databases = [database, *(name for name in env.get('MLFLOW_DB_EXTRA_NAMES', '').split(',') if name)]
with psycopg.connect(host=env['MLFLOW_DB_HOST'], port=env['MLFLOW_DB_PORT'], dbname='postgres',
                     user=env['MLFLOW_DB_ADMIN_USER'], password=env['MLFLOW_DB_ADMIN_PASSWORD'],
                     sslmode=env['MLFLOW_DB_SSLMODE'], autocommit=True) as admin:
    verifier = admin.pgconn.encrypt_password(env['MLFLOW_DB_PASSWORD'].encode(), role.encode(), b'scram-sha-256')
    run = admin.execute
    run('SELECT pg_advisory_lock(%s)', (120312342278002,))
    if run('SELECT 1 FROM pg_roles WHERE rolname = %s', (role,)).fetchone() is None:
        run(sql.SQL('CREATE ROLE {} LOGIN').format(sql.Identifier(role)))
    # (An admin that is no superuser cannot make one, nor even say NOSUPERUSER.)
    run(sql.SQL('ALTER ROLE {} WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD {}').format(
        sql.Identifier(role), sql.Literal(verifier.decode())))
    # Only a member of the new owner may hand a database over; the admin is never a superuser here.
    run(sql.SQL('GRANT {} TO CURRENT_USER').format(sql.Identifier(role)))
    for name in databases:
        if run('SELECT 1 FROM pg_database WHERE datname = %s', (name,)).fetchone() is None:
            run(sql.SQL('CREATE DATABASE {} OWNER {}').format(sql.Identifier(name), sql.Identifier(role)))
        run(sql.SQL('ALTER DATABASE {} OWNER TO {}').format(sql.Identifier(name), sql.Identifier(role)))
        run(sql.SQL('REVOKE ALL ON DATABASE {} FROM PUBLIC').format(sql.Identifier(name)))
print(f'role {role} set up, owner of {", ".join(databases)}')
