"""newsrec: the application shell (CLI, local services) around the recommender stages."""
