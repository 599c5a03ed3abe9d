"""The local analytical warehouse (DuckDB, schema ``raw_data``): sample data and introspection."""
