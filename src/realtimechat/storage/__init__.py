"""Storage: SQLAlchemy Core tables, the database runner, repositories, migrations."""
