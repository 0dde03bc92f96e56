"""The online feature store: the FeatureStore contract (base), its Redis and in-memory implementations, the key
scheme (keys) and materialization of an offline world (materialize)."""
