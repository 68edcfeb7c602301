"""Response bodies into Arrow tables: the parser, the native reader (C) and schema unification."""
