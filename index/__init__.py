"""Case store (SQLite via SQLAlchemy) and on-disk vector index (hnswlib). Never imports the viewer."""
import logging

logging.getLogger("casebook").addHandler(logging.NullHandler())
