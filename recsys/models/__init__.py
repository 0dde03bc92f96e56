"""The PyTorch models: item tower, user tower (two-tower retrieval) and the ranker. Forward takes named tensors."""
