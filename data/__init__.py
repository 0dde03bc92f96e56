"""The news world: the MIND schema, MIND file I/O, and a synthetic world with ground truth."""
