"""Configs: the schema (every field, its type, allowed values and default),
the builders (config -> model, optimizer, dataset) and loading config files
that build on each other (``files``; the configs themselves live in the
repository's ``configs/``)."""
