"""The online service: FastAPI app, the request pipeline, inference backends, the live article index."""
