"""PostgreSQL full-text search: a stored, generated tsvector per searchable table, GIN-indexed.

The database computes the vector on every insert and update, so it cannot go stale. Weights:
A = name/title, B = short text (summary, task, authors), C = long text (card, abstract,
description). SQLite nodes skip this and search by substring.
"""

from django.db import migrations

VECTORS = {
    "catalog_researchmodel": (
        "setweight(to_tsvector('english', name), 'A') || "
        "setweight(to_tsvector('english', summary || ' ' || task), 'B') || "
        "setweight(to_tsvector('english', card), 'C')"
    ),
    "catalog_paper": (
        "setweight(to_tsvector('english', title), 'A') || "
        "setweight(to_tsvector('english', author_names), 'B') || "
        "setweight(to_tsvector('english', abstract || ' ' || venue), 'C')"
    ),
    "catalog_dataset": (
        "setweight(to_tsvector('english', name), 'A') || "
        "setweight(to_tsvector('english', description), 'C')"
    ),
    "catalog_benchmark": (
        "setweight(to_tsvector('english', name), 'A') || "
        "setweight(to_tsvector('english', task_type), 'B') || "
        "setweight(to_tsvector('english', description), 'C')"
    ),
}


def add_search_vectors(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, expression in VECTORS.items():
        schema_editor.execute(
            f"ALTER TABLE {table} ADD COLUMN search_vector tsvector "
            f"GENERATED ALWAYS AS ({expression}) STORED"
        )
        # Keep the vector in the row (long text moves out instead): matching and ranking read
        # it for every hit, and fetching it from the TOAST table made them 4-5 times slower.
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN search_vector SET STORAGE MAIN")
        schema_editor.execute(
            f"CREATE INDEX {table}_search_gin ON {table} USING GIN (search_vector)"
        )


def drop_search_vectors(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in VECTORS:
        schema_editor.execute(f"ALTER TABLE {table} DROP COLUMN search_vector")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [migrations.RunPython(add_search_vectors, drop_search_vectors)]
