"""MLMD: the client, the execution cache, resolvers and gate records."""
